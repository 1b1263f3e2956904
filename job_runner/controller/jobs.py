"""The lifecycle of notebook jobs: take-in, admission writes, start, poll, finish, retry, cancel, preemption,
adoption after a restart.

The database is the only record of a job: what runs is read back from the rows (state, attempt, handle,
started_at, timeout) every pass, so nothing here mirrors it. Methods named ``db_*`` run in the controller's
worker thread (database and scheduler); the ``async`` ones run on the event loop and call the executor. The
order is always: write the state change, then act on the executor.
"""
from __future__ import annotations

import time

from sqlalchemy import update

from job_runner.db import ADMITTED, CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, utcnow
from job_runner.db.history import HistoryLookup
from job_runner.db.ops import epoch, transition, transition_many
from job_runner.executors.base import JobSpec
from job_runner.failures import CANCELLED as F_CANCELLED
from job_runner.failures import INFRASTRUCTURE, TIMEOUT, failure, should_retry

from . import metrics
from .workloads import JOB, WorkloadRef, job_workload

CHUNK = 900  # ids per IN (...): under SQLite's bound-parameter limit


def chunks(ids):
    ids = list(ids)
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


class Jobs:
    def __init__(self, ctl):
        self.ctl = ctl
        # Throttle of progress writes (job id -> when last written); not database state.
        self._progress_written: dict[int, float] = {}

    @property
    def db(self):
        return self.ctl.db

    @property
    def log(self):
        return self.ctl.log

    def wid(self, job_id: int) -> str:
        return self.ctl.refs.wid(WorkloadRef(JOB, job_id))

    # ------------------------------------------------------------------ worker thread: database + core
    def db_take_in(self) -> set[str]:
        """Submit newly queued jobs (``enqueued = 0``) to the scheduler, in submission order; returns the
        tenants of the jobs taken in."""
        sched, refs = self.ctl.scheduler, self.ctl.refs
        with self.db.session() as s:
            rows = (s.query(Job.id, Job.tenant, Job.user, Job.priority, Job.request, Job.created_at,
                            Job.expected_duration_s, Job.profile, Job.notebook_path, Job.name)
                    .filter(Job.enqueued == 0, Job.state == QUEUED).order_by(Job.id).all())
            history = HistoryLookup(s)  # past run times stand in for a duration the user did not give
            for row in rows:
                wid = refs.add(WorkloadRef(JOB, row.id))
                try:
                    past = None if row.expected_duration_s is not None else \
                        history.range_for(row.user, row.profile, row.notebook_path, row.name)
                    w = job_workload(row, wid, past)
                    verdict = sched.submit(w)
                    if not verdict.ok and verdict.reason == "queue_full":
                        # The queue limit was enforced at submission (under the tenant's row lock): a job
                        # already in the database keeps its place even if the limit was lowered since.
                        self.ctl.give_back(w)
                    elif not verdict.ok and verdict.reason != "duplicate":
                        raise ValueError(verdict.message or verdict.reason)
                except Exception as e:  # noqa: BLE001 - an invalid row must not block the queue
                    refs.forget(wid)
                    self.log.warning("job %s cannot be queued: %s", row.id, e)
                    transition(s, row.id, QUEUED, FAILED, message=str(e), replica=self.ctl.replica_id,
                               failure=failure(INFRASTRUCTURE, f"cannot be scheduled: {e}"), finished_at=utcnow())
            for ids in chunks(r.id for r in rows):
                s.execute(update(Job).where(Job.id.in_(ids), Job.state == QUEUED)
                          .values(enqueued=1).execution_options(synchronize_session=False))
        return {r.tenant for r in rows}

    def db_write_admissions(self, s, admitted) -> list[int]:
        """``queued -> admitted`` for the admitted jobs [(job id, Workload, Assignment)], in session ``s``.
        Returns the ids written; the others (cancelled meanwhile, taken by another replica) are released."""
        if not admitted:
            return []
        now = utcnow()
        attempts = {}
        for ids in chunks(job_id for job_id, _, _ in admitted):
            attempts.update(s.query(Job.id, Job.attempt).filter(Job.id.in_(ids)).all())
        changes = [{"id": job_id, "from": (QUEUED,), "to": ADMITTED, "message": f"admitted on {a.node}",
                    "assignment": a.to_dict(), "admitted_at": now, "progress": None,
                    "attempt": (attempts.get(job_id) or 0) + 1} for job_id, _, a in admitted]
        done = transition_many(s, changes, replica=self.ctl.replica_id)
        written = []
        for job_id, w, _ in admitted:
            if job_id in done:
                metrics.JOBS_ADMITTED.labels(tenant=w.tenant).inc()
                written.append(job_id)
            else:
                self.db_release(job_id)
        return written

    def db_specs(self, ids) -> list[tuple[int, JobSpec, dict]]:
        with self.db.read() as s:
            rows = [r for part in chunks(ids) for r in s.query(Job).filter(Job.id.in_(part))]
            return [(r.id, self.spec(r), r.assignment or {}) for r in rows]

    def spec(self, row) -> JobSpec:
        return JobSpec.from_row(row, self.ctl.profile(row.profile), self.ctl.scheduler.tenants.get(row.tenant))

    def db_write_started(self, started) -> set[int]:
        """``admitted -> running`` with the executor's handle, for [(job id, attempt, handle)]."""
        now = utcnow()
        with self.db.session() as s:
            done = transition_many(s, [{"id": job_id, "from": (ADMITTED,), "to": RUNNING, "message": "started",
                                        "attempt": attempt, "handle": handle, "started_at": now}
                                       for job_id, attempt, handle in started], replica=self.ctl.replica_id)
            created = dict(s.query(Job.id, Job.created_at).filter(Job.id.in_(list(done))).all()) if done else {}
        for job_id in done:
            metrics.JOB_WAIT.observe(max(0.0, time.time() - (epoch(created.get(job_id)) or time.time())))
        return done

    def db_release(self, job_id: int) -> None:
        """The core lets go of the job's workload (its slice is free at once)."""
        self._progress_written.pop(job_id, None)
        wid = self.wid(job_id)
        if self.ctl.scheduler is not None and not self.ctl.scheduler.release(wid):
            self.ctl.scheduler.cancel(wid)
        self.ctl.refs.forget(wid)

    def db_handles(self, ids) -> dict[int, dict | None]:
        with self.db.read() as s:
            return dict(s.query(Job.id, Job.handle).filter(Job.id.in_(list(ids))).all())

    def db_requeue_preempted(self, ids) -> None:
        self.ctl.read.invalidate()
        with self.db.session() as s:
            for job_id in ids:
                self.ctl.refs.forget(self.wid(job_id))  # the core released it already
                transition(s, job_id, (ADMITTED, RUNNING), QUEUED, message="preempted; queued again",
                           replica=self.ctl.replica_id, enqueued=0, handle=None)
            self.ctl.accounting.jobs(s, ids)  # accounting (issue 15 A): intervals end in this transaction

    def db_requeue_stale(self, job_id: int, reason: str) -> dict | None:
        """A job whose placement is gone from the inventory: queued again (it keeps its attempt count and
        retry budget), the reason in its history. Returns the run's handle, to be stopped."""
        with self.db.session() as s:
            handle = s.query(Job.handle).filter(Job.id == job_id).scalar()
            transition(s, job_id, (ADMITTED, RUNNING), QUEUED, replica=self.ctl.replica_id, enqueued=0,
                       handle=None, message=f"its placement is gone ({reason}): stopped and queued again")
            self.ctl.accounting.jobs(s, [job_id])  # accounting (issue 15 A)
        return handle

    async def stop_runs(self, handles) -> None:
        """Stop the runs [(job id, handle)] of jobs already queued again (their placement is gone)."""
        for job_id, handle in handles:
            try:
                await self.ctl.executor.cancel(handle)
            except Exception as e:  # noqa: BLE001 - a run that cannot be stopped is found by reconcile
                self.log.warning("job %s: stopping the run of a stale placement failed: %s", job_id, e)

    def db_running(self):
        with self.db.read() as s:
            return s.query(Job.id, Job.handle, Job.timeout_s, Job.started_at).filter(Job.state == RUNNING).all()

    def db_write_progress(self, progress) -> None:
        now = time.time()
        with self.db.session() as s:
            for job_id, prog in progress:
                self._progress_written[job_id] = now
                s.execute(update(Job).where(Job.id == job_id, Job.state == RUNNING).values(progress=prog))

    def db_finish(self, outcomes, retry: bool, from_states):
        """Final outcomes of current attempts [(job id, state, failure, progress)] in one transaction: each
        is retried (back to queued) when its policy allows, or ends in its final state; the core releases
        their slices. Returns the handles to clean up and whether something was requeued."""
        handles, requeue, changes, finals = [], False, [], []
        self.ctl.read.invalidate()  # slices are freed
        with self.db.session() as s:
            rows = {}
            for ids in chunks(o[0] for o in outcomes):
                rows.update({r.id: r for r in s.query(Job.id, Job.state, Job.attempt, Job.cancel_requested,
                                                         Job.max_retries, Job.retry_on, Job.tenant, Job.started_at,
                                                         Job.handle).filter(Job.id.in_(ids))})
            for job_id, state, fail, progress in outcomes:
                row = rows.get(job_id)
                self.db_release(job_id)
                if row is None or row.state not in from_states:
                    continue
                if row.handle is not None:
                    handles.append((job_id, row.handle))
                values = {"id": job_id, "from": (row.state,), "failure": fail, "handle": None, "attempt": row.attempt}
                if progress is not None:
                    values["progress"] = progress
                if retry and state == FAILED and not row.cancel_requested and should_retry(
                        fail, row.attempt, row.max_retries, row.retry_on, self.ctl.lost_run_restarts):
                    requeue = True
                    changes.append(dict(values, to=QUEUED, enqueued=0,
                                        message=f"attempt {row.attempt} failed ({fail.get('class')}): retrying"))
                    metrics.JOBS_RETRIED.labels(tenant=row.tenant, failure=fail.get("class")).inc()
                else:
                    changes.append(dict(values, to=state, finished_at=utcnow(),
                                        message=(fail or {}).get("message") or state))
                    finals.append((job_id, row, state))
            done = transition_many(s, changes, replica=self.ctl.replica_id)
            self.ctl.accounting.jobs(s, done)  # accounting (issue 15 A): intervals end in this transaction
        for job_id, row, state in finals:
            if job_id in done:
                metrics.JOBS_FINISHED.labels(tenant=row.tenant, state=state).inc()
                if row.started_at:
                    metrics.JOB_DURATION.labels(state=state).observe(max(0.0, time.time() - epoch(row.started_at)))
        return handles, requeue

    def db_cancel_requests(self):
        with self.db.read() as s:
            return s.query(Job.id, Job.state, Job.handle).filter(Job.cancel_requested == 1).all()

    def db_cancels_handled(self, queued_ids, all_ids) -> None:
        for job_id in queued_ids:  # cancelled while queued (the API wrote it): drop it from the queue
            self.db_release(job_id)
        with self.db.session() as s:
            for ids in chunks(all_ids):
                s.execute(update(Job).where(Job.id.in_(ids)).values(cancel_requested=2)
                          .execution_options(synchronize_session=False))

    def db_active(self):
        """Admitted and running jobs (to adopt after becoming leader)."""
        with self.db.read() as s:
            return [(r.id, r.state, r.handle, self.spec(r), r.assignment or {})
                    for r in s.query(Job).filter(Job.state.in_((ADMITTED, RUNNING))).order_by(Job.id)]

    def db_set_handle(self, job_id: int, handle: dict) -> None:
        with self.db.session() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.state == RUNNING).values(handle=handle))

    # ------------------------------------------------------------------ event loop: the executor
    async def start_many(self, items) -> None:
        """Start admitted jobs [(job id, JobSpec, assignment)] on the executor, then write them running."""
        ex, run = self.ctl.executor, self.ctl.in_worker
        started, failed = [], []
        for job_id, spec, assignment in items:
            try:
                started.append((job_id, spec.attempt, await ex.start(spec, assignment)))
            except Exception as e:  # noqa: BLE001 - a start failure is an infrastructure failure of this attempt
                self.log.exception("job %s: start failed", job_id)
                failed.append((job_id, FAILED, failure(INFRASTRUCTURE, f"could not start: {e}"), None))
        done = await run(self.db_write_started, started) if started else set()
        for job_id, _, handle in started:
            if job_id not in done:  # cancelled between admission and start: stop what was started
                try:
                    await ex.cancel(handle)
                finally:
                    await run(self.db_release, job_id)
        if failed:
            await self.finish_many(failed, from_states=(ADMITTED,))

    async def finish_many(self, outcomes, retry: bool = True, from_states=(ADMITTED, RUNNING)) -> None:
        handles, _requeued = await self.ctl.in_worker(self.db_finish, outcomes, retry, from_states)
        for job_id, handle in handles:  # after the commit
            try:
                await self.ctl.executor.cleanup(handle)
            except Exception as e:  # noqa: BLE001
                self.log.warning("job %s: cleanup failed: %s", job_id, e)
        # Every outcome frees its slice (and a retry may be queued): the next pass runs at once and admits
        # what waits, instead of after tick_interval_s (a pass admits before it polls).
        self.ctl.wake()

    async def poll(self) -> None:
        rows = await self.ctl.in_worker(self.db_running)
        now = time.time()
        outcomes, progress = [], []
        for row in rows:
            if row.handle is None:
                continue
            try:
                st = await self.ctl.executor.poll(row.handle)
            except Exception as e:  # noqa: BLE001
                self.log.warning("job %s: poll failed: %s", row.id, e)
                continue
            started = epoch(row.started_at) or now
            if not st.final and row.timeout_s and now - started > row.timeout_s:
                await self.ctl.executor.cancel(row.handle)
                outcomes.append((row.id, FAILED, failure(
                    TIMEOUT, f"the job ran longer than its timeout of {row.timeout_s:g} s"), st.progress))
            elif st.final:
                fail = None if st.state == SUCCEEDED else (st.failure or failure(INFRASTRUCTURE, "failed"))
                outcomes.append((row.id, SUCCEEDED if st.state == SUCCEEDED else FAILED, fail, st.progress))
            elif st.progress and now - self._progress_written.get(row.id, 0) >= self.ctl.progress_write_interval_s:
                progress.append((row.id, st.progress))
        if progress:
            await self.ctl.in_worker(self.db_write_progress, progress)
        if outcomes:
            await self.finish_many(outcomes)

    async def handle_cancels(self) -> None:
        rows = await self.ctl.in_worker(self.db_cancel_requests)
        if not rows:
            return
        active, failed = [], set()
        for row in rows:
            if row.state in (ADMITTED, RUNNING):
                if row.handle is not None:
                    try:
                        await self.ctl.executor.cancel(row.handle)
                    except Exception as e:  # noqa: BLE001
                        # Still running (and on its slice): the request stays recorded (cancel_requested 1)
                        # and the next pass tries again, until the executor's stop succeeds.
                        self.log.warning("job %s: cancel failed (retried next pass): %s", row.id, e)
                        failed.add(row.id)
                        continue
                active.append((row.id, CANCELLED, await self._cancelled_outcome(row.handle), None))
        if active:
            await self.finish_many(active, retry=False)
        await self.ctl.in_worker(self.db_cancels_handled, [r.id for r in rows if r.state not in (ADMITTED, RUNNING)],
                                 [r.id for r in rows if r.id not in failed])

    async def _cancelled_outcome(self, handle) -> dict:
        """"cancelled by request", unless the run had already ended itself at its stop marker (a pruned trial
        whose kernel was slow to exit when the cancel that follows a prune came): then its own account
        (which rule stopped it, at which step) is the outcome."""
        if handle is not None:
            try:
                st = await self.ctl.executor.poll(handle)
            except Exception:  # noqa: BLE001 - the run is gone either way: the request is the outcome
                st = None
            if st is not None and st.final and (st.failure or {}).get("stopped_itself"):
                return st.failure
        return failure(F_CANCELLED, "cancelled by request")

    async def preempt(self, ids) -> None:
        """Stop preempted jobs (the core has released their slices), then queue them again."""
        handles = await self.ctl.in_worker(self.db_handles, ids)
        for job_id in ids:
            if handles.get(job_id) is not None:
                try:
                    await self.ctl.executor.cancel(handles[job_id])
                except Exception as e:  # noqa: BLE001 - requeued anyway; a run left over is found by reconcile
                    self.log.warning("job %s: stopping the preempted run failed: %s", job_id, e)
        await self.ctl.in_worker(self.db_requeue_preempted, ids)

    async def adopt(self, active) -> None:
        """After becoming leader: start what was admitted (start is idempotent per attempt), find again
        what was running, fail what is lost."""
        admitted = [(job_id, spec, a) for job_id, state, _, spec, a in active if state == ADMITTED]
        if admitted:
            await self.start_many(admitted)
        for job_id, state, stored, spec, _ in active:
            if state != RUNNING:
                continue
            handle = None
            try:
                handle = await self.ctl.executor.adopt(spec)
            except Exception as e:  # noqa: BLE001
                self.log.warning("job %s: adopt failed: %s", job_id, e)
            if handle is None:
                await self.finish_many([(job_id, FAILED, failure(
                    INFRASTRUCTURE, "the run was lost while the service was down (no process to re-adopt)"), None)])
            elif handle != stored:
                await self.ctl.in_worker(self.db_set_handle, job_id, handle)
