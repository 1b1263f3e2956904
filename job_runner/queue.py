"""The scheduling loop of the aistack service.

One replica at a time is the *leader* and runs this loop; the others serve the API only. Which one:
  - PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated connection.
    It is released by the server the moment that connection dies, so a SIGKILLed leader is replaced at the
    next tick of another replica.
  - SQLite: a lease row (``leases``) renewed every tick and taken over after ``lease_ttl_s``.
On top of that, every job state change is a compare-and-set on the job's row (``job_runner.db.ops``), so even
two replicas that both believed they lead (a paused process whose lease ran out) cannot start one attempt of a
job twice: only one wins ``queued -> admitted``.

The leader keeps the scheduling core (``job_runner.scheduling.Scheduler``) in memory, rebuilt from the
database when it becomes leader: running jobs and allocated server slices are restored, queued ones
resubmitted in submission order, and the executor re-adopts the runs it finds. Each tick:
  1. takes in newly queued jobs, pending allocations, cancellations and released allocations;
  2. asks the scheduler for a decision; writes each admission (``queued -> admitted``) to the database,
     *then* starts the job on the executor and writes ``admitted -> running``;
  3. polls the running jobs (progress, result, timeout), writes final states, retries what the job's
     retry policy allows, and releases their slices.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy import func, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from job_runner.db import (
    ADMITTED,
    ALLOC_ALLOCATED,
    ALLOC_PENDING,
    ALLOC_RELEASED,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Allocation,
    Job,
    Lease,
    TenantRow,
    utcnow,
)
from job_runner.db.ops import epoch, transition, transition_many
from job_runner.executors.base import JobSpec, slice_env
from job_runner.failures import CANCELLED as F_CANCELLED
from job_runner.failures import INFRASTRUCTURE, TIMEOUT, failure, should_retry
from job_runner.scheduling import Assignment, Scheduler, SliceRequest, Workload

LEADER_LOCK_KEY = 0x41495355  # PostgreSQL advisory lock key of the scheduling loop


def job_wid(job_id: int) -> str:
    return f"job-{job_id}"


def alloc_wid(alloc_id: int) -> str:
    return f"alloc-{alloc_id}"


def job_workload(row) -> Workload:
    return Workload(job_wid(row.id), row.tenant, row.user, "job", row.priority or "normal",
                    SliceRequest.from_dict(row.request or {"kind": "cpu"}), epoch(row.created_at) or time.time(),
                    row.expected_duration_s)


def alloc_workload(row) -> Workload:
    return Workload(alloc_wid(row.id), row.tenant, row.user, "server", row.priority or "normal",
                    SliceRequest.from_dict(row.request or {"kind": "cpu"}), epoch(row.created_at) or time.time())


def job_spec(row, profile=None, env=None) -> JobSpec:
    return JobSpec(
        id=row.id, name=row.name, user=row.user, tenant=row.tenant, profile=row.profile, attempt=row.attempt,
        notebook=row.notebook, parameters=dict(row.parameters or {}), kernel_name=row.kernel_name, cwd=row.cwd,
        timeout_s=row.timeout_s, request=dict(row.request or {}), env=dict(env if env is not None else row.env or {}),
        image=getattr(profile, "image", None), extra=dict(getattr(profile, "extra", None) or {}),
    )


class LeaderElection:
    """Who runs the scheduling loop (see the module docstring)."""

    def __init__(self, db, replica_id: str, ttl_s: float, log):
        self.db = db
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        self.log = log
        self._conn = None
        self.is_leader = False

    def check(self) -> bool:
        try:
            self.is_leader = self._check_pg() if self.db.is_postgres else self._check_lease()
        except OperationalError as e:
            self.log.warning("leader election: database error: %s", e)
            self._drop()
            self.is_leader = False
        return self.is_leader

    def _drop(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - the connection is dead anyway
                pass
            self._conn = None

    def _check_pg(self) -> bool:
        if self._conn is not None:
            self._conn.execute(text("SELECT 1"))
            return True
        conn = self.db.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _check_lease(self) -> bool:
        now = time.time()
        with self.db.session() as s:
            res = s.execute(
                update(Lease).where(Lease.name == "scheduler",
                                    (Lease.holder == self.replica_id) | (Lease.expires_at < now))
                .values(holder=self.replica_id, expires_at=now + self.ttl_s)
            )
            if res.rowcount == 1:
                return True
            if s.get(Lease, "scheduler") is None:
                s.add(Lease(name="scheduler", holder=self.replica_id, expires_at=now + self.ttl_s))
                try:
                    s.flush()
                    return True
                except IntegrityError:
                    s.rollback()
            return False

    def release(self):
        if self.db.is_postgres:
            self._drop()
        elif self.is_leader:
            with self.db.session() as s:
                s.execute(update(Lease).where(Lease.name == "scheduler", Lease.holder == self.replica_id)
                          .values(expires_at=0))
        self.is_leader = False


@dataclass
class PendingInfo:
    position: int
    estimated_start: float | None
    reason: str


class JobQueue(LoggingConfigurable):
    """The scheduling loop: admits queued workloads through the core and drives the executor."""

    tick_interval_s = Float(1.0, help="Seconds between scheduling passes (a submission wakes it earlier).").tag(config=True)
    lease_ttl_s = Float(10.0, help="SQLite only: a leader lease not renewed for this long may be taken over.").tag(config=True)
    replica_id = Unicode(help="This replica's name in leases and job events (default: host-pid).").tag(config=True)
    max_admissions_per_tick = Integer(
        2000, help="Admissions written per pass at most (keeps a pass short with a huge queue)."
    ).tag(config=True)
    progress_write_interval_s = Float(1.0, help="Write a running job's progress at most this often.").tag(config=True)

    @default("replica_id")
    def _replica_default(self):
        return f"{socket.gethostname()}-{os.getpid()}"

    def __init__(self, db, deployment, executor, **kwargs):
        super().__init__(**kwargs)
        self.db = db
        self.deployment = deployment
        self.executor = executor
        self.election = LeaderElection(db, self.replica_id, self.lease_ttl_s, self.log)
        self.scheduler = None
        self.pending: dict[str, PendingInfo] = {}
        self.handles: dict[int, dict] = {}  # running job id -> executor handle
        self._started: dict[int, float] = {}  # job id -> epoch its attempt started (timeouts)
        self._progress_written: dict[int, float] = {}
        self._allocs: set[int] = set()  # allocation ids known to the scheduler
        self._tenants_version = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._tick_lock = asyncio.Lock()
        self.alloc_waiters: dict[int, list[asyncio.Future]] = {}
        self.last_tick_at = 0.0
        self.ticks = 0
        self._loop = None
        executor.notify = self.wake_threadsafe

    def wake_threadsafe(self):
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # ----------------------------------------------------------------------- loop
    def wake(self):
        self._wake.set()

    async def run_forever(self):
        self._loop = asyncio.get_running_loop()
        while not self._stopped:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the loop must survive a bad pass; it is logged
                self.log.exception("scheduling pass failed")
                self._reset()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def stop(self):
        self._stopped = True
        self._wake.set()
        self.election.release()

    def _reset(self):
        self.scheduler = None
        self.handles.clear()
        self.pending.clear()
        self._allocs.clear()

    async def tick(self):
        async with self._tick_lock:
            from aistack_hub import metrics

            t0 = time.perf_counter()
            was_leader = self.scheduler is not None
            if not self.election.check():
                if was_leader:
                    self.log.warning("lost the scheduler leadership")
                    self._reset()
                metrics.IS_LEADER.set(0)
                return
            metrics.IS_LEADER.set(1)
            version = self._read_tenants_version()
            if self.scheduler is None:
                await self._rebuild(adopt=True)
            elif version != self._tenants_version:
                self.scheduler.set_tenants(self.tenants())  # quota changes apply from this pass
            self._tenants_version = version
            self._take_in()
            await self._handle_cancels()
            await self._schedule()
            await self._poll_running()
            self._update_metrics()
            self.last_tick_at = time.time()
            self.ticks += 1
            metrics.TICK_SECONDS.observe(time.perf_counter() - t0)

    # ------------------------------------------------------------ (re)building
    def _read_tenants_version(self):
        with self.db.read() as s:
            return s.query(func.count(TenantRow.name), func.max(TenantRow.updated_at)).one()

    def tenants(self):
        from job_runner.scheduling import Tenant

        with self.db.read() as s:
            return [Tenant.from_config(r.spec) for r in s.query(TenantRow).order_by(TenantRow.name)]

    def new_scheduler(self):
        d = self.deployment
        return Scheduler(d.inventory, self.tenants(), policy=d.policy, preemption=d.preemption)

    async def _rebuild(self, adopt: bool):
        """Build the in-memory scheduler from the database (on becoming leader, or tenants changed)."""
        self.log.info("building the scheduler from the database (adopt runs: %s)", adopt)
        sched = self.new_scheduler()
        running = []
        with self.db.session() as s:
            active_jobs = s.query(Job).filter(Job.state.in_((ADMITTED, RUNNING))).order_by(Job.id).all()
            for row in active_jobs:
                if row.assignment:
                    running.append((job_workload(row), Assignment.from_dict(row.assignment)))
            allocs = s.query(Allocation).filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED))).order_by(Allocation.id).all()
            for a in allocs:
                if a.state == ALLOC_ALLOCATED and a.assignment:
                    running.append((alloc_workload(a), Assignment.from_dict(a.assignment)))
        sched.restore(running)
        self.scheduler = sched
        self.pending.clear()
        self._allocs = {a.id for a in allocs if a.state == ALLOC_ALLOCATED}
        # Everything queued is (re)submitted, in submission order.
        with self.db.session() as s:
            s.execute(update(Job).where(Job.state == QUEUED, Job.enqueued == 1).values(enqueued=0))
        self._take_in()
        if adopt:
            self.handles.clear()
            for row in active_jobs:
                await self._adopt(row)

    async def _adopt(self, row):
        spec = job_spec(row)
        if row.state == ADMITTED:
            # Admitted but maybe never started: start is idempotent per (job, attempt).
            await self._start(row.id, spec, row.assignment or {})
            return
        handle = None
        try:
            handle = await self.executor.adopt(spec)
        except Exception as e:  # noqa: BLE001
            self.log.warning("job %s: adopt failed: %s", row.id, e)
        if handle is None:
            await self._finish(row.id, FAILED, failure(
                INFRASTRUCTURE, "the run was lost while the service was down (no process to re-adopt)"))
            return
        self.handles[row.id] = handle
        self._started[row.id] = epoch(row.started_at) or time.time()

    # ------------------------------------------------------------------ take in
    def _take_in(self):
        sched = self.scheduler
        with self.db.session() as s:
            rows = (s.query(Job.id, Job.tenant, Job.user, Job.priority, Job.request, Job.created_at,
                            Job.expected_duration_s).filter(Job.enqueued == 0, Job.state == QUEUED).order_by(Job.id).all())
            for row in rows:
                try:
                    w = job_workload(row)
                    verdict = sched.submit(w)
                    if not verdict.ok and verdict.reason in ("queue_full", "duplicate"):
                        # The queue limit was enforced at submission (under the tenant's row lock);
                        # a job already in the database keeps its place.
                        if verdict.reason == "queue_full":
                            sched.pending[w.id] = w
                    elif not verdict.ok:
                        raise ValueError(verdict.message or verdict.reason)
                except Exception as e:  # noqa: BLE001 - an invalid row must not block the queue
                    self.log.warning("job %s cannot be queued: %s", row.id, e)
                    transition(s, row.id, QUEUED, FAILED, message=str(e), replica=self.replica_id,
                               failure=failure(INFRASTRUCTURE, f"cannot be scheduled: {e}"), finished_at=utcnow())
            ids = [r.id for r in rows]
            for i in range(0, len(ids), 900):
                s.execute(update(Job).where(Job.id.in_(ids[i:i + 900]), Job.state == QUEUED)
                          .values(enqueued=1).execution_options(synchronize_session=False))
            # Server allocations: few; compare the full set with what the scheduler knows.
            live = {a.id: a for a in s.query(Allocation).filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)))}
        for alloc_id in list(self._allocs):
            if alloc_id not in live:  # released (DELETE allocations) or gone
                self._allocs.discard(alloc_id)
                try:
                    sched.release(alloc_wid(alloc_id))
                except KeyError:
                    pass
                try:
                    sched.cancel(alloc_wid(alloc_id))
                except KeyError:
                    pass
        for alloc_id, a in live.items():
            if alloc_id not in self._allocs:
                self._allocs.add(alloc_id)
                if a.state == ALLOC_PENDING:
                    verdict = sched.submit(alloc_workload(a))
                    if not verdict.ok and verdict.reason != "duplicate":
                        self.log.warning("allocation %s refused: %s", alloc_id, verdict.message)
                        with self.db.session() as s:
                            s.execute(update(Allocation).where(Allocation.id == alloc_id)
                                      .values(state=ALLOC_RELEASED, released_at=utcnow()))

    async def _handle_cancels(self):
        with self.db.read() as s:
            rows = s.query(Job.id, Job.state).filter(Job.cancel_requested == 1).all()
        for job_id, state in rows:
            if state in (ADMITTED, RUNNING):
                handle = self.handles.get(job_id)
                if handle is not None:
                    try:
                        await self.executor.cancel(handle)
                    except Exception as e:  # noqa: BLE001
                        self.log.warning("job %s: cancel failed: %s", job_id, e)
                await self._finish(job_id, CANCELLED, failure(F_CANCELLED, "cancelled by request"), retry=False)
            else:
                try:
                    self.scheduler.cancel(job_wid(job_id))
                except KeyError:
                    pass
                self.pending.pop(job_wid(job_id), None)
            with self.db.session() as s:
                s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=2))

    # ----------------------------------------------------------------- schedule
    async def _schedule(self):
        from aistack_hub import metrics

        decision = self.scheduler.schedule(time.time())
        self.pending = {p.workload.id: PendingInfo(p.position, p.estimated_start, p.reason) for p in decision.pending}
        for wid in decision.preempt:
            await self._preempted(wid)
        to_start = []
        now = utcnow()
        admitted = decision.admitted[: self.max_admissions_per_tick]
        for w, a in decision.admitted[self.max_admissions_per_tick:]:
            # Not written this pass: give the slice back; the workload is submitted again.
            self.scheduler.release(w.id)
            self.scheduler.submit(w)
        job_changes, job_workloads = [], {}
        with self.db.session() as s:
            for w, a in admitted:
                kind, _, raw_id = w.id.partition("-")
                row_id = int(raw_id)
                adict = a.to_dict()
                env = slice_env(adict, w.request.to_dict())
                if kind == "alloc":
                    res = s.execute(update(Allocation).where(Allocation.id == row_id, Allocation.state == ALLOC_PENDING)
                                    .values(state=ALLOC_ALLOCATED, assignment=adict, env=env, allocated_at=now))
                    if res.rowcount != 1:
                        self.scheduler.release(w.id)
                        continue
                    created = s.query(Allocation.created_at).filter(Allocation.id == row_id).scalar()
                    metrics.SPAWN_LATENCY.observe(max(0.0, time.time() - (epoch(created) or time.time())))
                    continue
                job_workloads[row_id] = w
                job_changes.append({"id": row_id, "from": (QUEUED,), "to": ADMITTED, "message": f"admitted on {a.node}",
                                    "assignment": adict, "env": env, "admitted_at": now, "progress": None})
            if job_changes:
                attempts = {}
                ids = [c["id"] for c in job_changes]
                for i in range(0, len(ids), 900):
                    attempts.update(s.query(Job.id, Job.attempt).filter(Job.id.in_(ids[i:i + 900])).all())
                for c in job_changes:
                    c["attempt"] = (attempts.get(c["id"]) or 0) + 1
                done = transition_many(s, job_changes, replica=self.replica_id)
                for row_id, w in job_workloads.items():
                    if row_id in done:
                        metrics.JOBS_ADMITTED.labels(tenant=w.tenant).inc()
                        to_start.append(row_id)
                    else:  # cancelled meanwhile, or another replica took it
                        self.scheduler.release(w.id)
        # The admissions are committed: now the side effects.
        self._notify_allocs()
        if to_start:
            with self.db.session() as s:
                rows = s.query(Job).filter(Job.id.in_(to_start)).all()
                specs = [(r.id, job_spec(r, self._profile(r.profile)), r.assignment) for r in rows]
            await self._start_many(specs)

    def _profile(self, slug):
        try:
            return self.deployment.profiles.get(slug)
        except KeyError:
            return None

    def _notify_allocs(self):
        for alloc_id, futures in list(self.alloc_waiters.items()):
            for f in futures:
                if not f.done():
                    f.set_result(True)

    async def _start(self, job_id: int, spec: JobSpec, assignment: dict):
        await self._start_many([(job_id, spec, assignment)])

    async def _start_many(self, items):
        """Start admitted jobs on the executor, then write admitted -> running for all in one transaction."""
        started, failed = [], []
        attempts = {job_id: spec.attempt for job_id, spec, _ in items}
        for job_id, spec, assignment in items:
            try:
                started.append((job_id, await self.executor.start(spec, assignment or {})))
            except Exception as e:  # noqa: BLE001 - a start failure is an infrastructure failure of this attempt
                self.log.exception("job %s: start failed", job_id)
                failed.append((job_id, FAILED, failure(INFRASTRUCTURE, f"could not start: {e}"), None))
        lost = []
        now = utcnow()
        with self.db.session() as s:
            done = transition_many(s, [{"id": job_id, "from": (ADMITTED,), "to": RUNNING, "message": "started",
                                        "attempt": attempts[job_id], "handle": handle, "started_at": now}
                                       for job_id, handle in started], replica=self.replica_id)
        for job_id, handle in started:
            if job_id in done:
                self.handles[job_id] = handle
                self._started[job_id] = time.time()
            else:
                lost.append((job_id, handle))
        for job_id, handle in lost:
            # Cancelled between admission and start: stop what was started.
            try:
                await self.executor.cancel(handle)
            finally:
                self._release(job_id)
        if failed:
            await self._finish_many(failed, from_states=(ADMITTED,))

    async def _preempted(self, wid: str):
        kind, _, raw_id = wid.partition("-")
        row_id = int(raw_id)
        if kind == "alloc":
            with self.db.session() as s:
                s.execute(update(Allocation).where(Allocation.id == row_id)
                          .values(state=ALLOC_RELEASED, released_at=utcnow()))
            self._allocs.discard(row_id)
            return
        handle = self.handles.pop(row_id, None)
        if handle is not None:
            await self.executor.cancel(handle)
        with self.db.session() as s:
            transition(s, row_id, (ADMITTED, RUNNING), QUEUED, message="preempted; queued again",
                       replica=self.replica_id, enqueued=0, handle=None)

    # --------------------------------------------------------------------- poll
    async def _poll_running(self):
        now = time.time()
        timeouts = {}
        if self.handles:
            with self.db.read() as s:
                timeouts = dict(s.query(Job.id, Job.timeout_s).filter(Job.id.in_(list(self.handles))).all())
        outcomes, progress = [], []
        for job_id, handle in list(self.handles.items()):
            try:
                st = await self.executor.poll(handle)
            except Exception as e:  # noqa: BLE001
                self.log.warning("job %s: poll failed: %s", job_id, e)
                continue
            timeout = timeouts.get(job_id)
            if not st.final and timeout and now - self._started.get(job_id, now) > timeout:
                await self.executor.cancel(handle)
                outcomes.append((job_id, FAILED, failure(TIMEOUT, f"the job ran longer than its timeout of {timeout:g} s"),
                                 st.progress))
            elif st.final:
                fail = None if st.state == SUCCEEDED else (st.failure or failure(INFRASTRUCTURE, "failed"))
                outcomes.append((job_id, SUCCEEDED if st.state == SUCCEEDED else FAILED, fail, st.progress))
            elif st.progress and now - self._progress_written.get(job_id, 0) >= self.progress_write_interval_s:
                self._progress_written[job_id] = now
                progress.append((job_id, st.progress))
        if progress:
            with self.db.session() as s:
                for job_id, prog in progress:
                    s.execute(update(Job).where(Job.id == job_id, Job.state == RUNNING).values(progress=prog))
        if outcomes:
            await self._finish_many(outcomes)

    def _release(self, job_id: int):
        self.handles.pop(job_id, None)
        self._started.pop(job_id, None)
        self._progress_written.pop(job_id, None)
        try:
            self.scheduler.release(job_wid(job_id))
        except KeyError:
            pass

    async def _finish(self, job_id: int, state: str, fail: dict | None, progress=None, retry: bool = True,
                      from_states=(ADMITTED, RUNNING)):
        await self._finish_many([(job_id, state, fail, progress)], retry=retry, from_states=from_states)

    async def _finish_many(self, outcomes, retry: bool = True, from_states=(ADMITTED, RUNNING)):
        """Final outcomes of current attempts [(job_id, state, failure, progress)], written in one
        transaction: each is retried (back to queued) when its policy says so, or ends in its final state.
        The executor's cleanup comes after the commit."""
        from aistack_hub import metrics

        handles, requeue, changes, finals = [], False, [], []
        ids = [o[0] for o in outcomes]
        with self.db.session() as s:
            rows = {}
            for i in range(0, len(ids), 900):
                rows.update({r.id: r for r in s.query(Job.id, Job.state, Job.attempt, Job.cancel_requested, Job.max_retries,
                                                         Job.retry_on, Job.tenant, Job.started_at)
                             .filter(Job.id.in_(ids[i:i + 900]))})
            for job_id, state, fail, progress in outcomes:
                handle = self.handles.get(job_id)
                if handle is not None:
                    handles.append((job_id, handle))
                row = rows.get(job_id)
                self._release(job_id)
                if row is None or row.state not in from_states:
                    continue
                values = {"id": job_id, "from": (row.state,), "failure": fail, "handle": None, "attempt": row.attempt}
                if progress is not None:
                    values["progress"] = progress
                if retry and state == FAILED and not row.cancel_requested and should_retry(
                        fail, row.attempt, row.max_retries, row.retry_on):
                    requeue = True
                    changes.append(dict(values, to=QUEUED, enqueued=0,
                                        message=f"attempt {row.attempt} failed ({fail.get('class')}): retrying"))
                    metrics.JOBS_RETRIED.labels(tenant=row.tenant, failure=fail.get("class")).inc()
                else:
                    changes.append(dict(values, to=state, finished_at=utcnow(), message=(fail or {}).get("message") or state))
                    finals.append((job_id, row, state))
            done = transition_many(s, changes, replica=self.replica_id)
        for job_id, row, state in finals:
            if job_id in done:
                metrics.JOBS_FINISHED.labels(tenant=row.tenant, state=state).inc()
                if row.started_at:
                    metrics.JOB_DURATION.labels(state=state).observe(max(0.0, time.time() - epoch(row.started_at)))
        for job_id, handle in handles:
            try:
                await self.executor.cleanup(handle)
            except Exception as e:  # noqa: BLE001
                self.log.warning("job %s: cleanup failed: %s", job_id, e)
        if requeue:
            self.wake()

    # ------------------------------------------------------------------ metrics
    def _update_metrics(self):
        from aistack_hub import metrics

        with self.db.read() as s:
            queued = dict(s.query(Job.tenant, func.count()).filter(Job.state == QUEUED).group_by(Job.tenant).all())
            running = dict(s.query(Job.tenant, func.count()).filter(Job.state.in_((ADMITTED, RUNNING)))
                           .group_by(Job.tenant).all())
            servers = dict(s.query(Allocation.tenant, func.count()).filter(Allocation.state == ALLOC_ALLOCATED)
                           .group_by(Allocation.tenant).all())
        tenants = [t.name for t in self.deployment.tenants]
        metrics.set_per_tenant(metrics.JOBS_QUEUED, queued, tenants)
        metrics.set_per_tenant(metrics.JOBS_RUNNING, running, tenants)
        metrics.set_per_tenant(metrics.SERVERS_ALLOCATED, servers, tenants)
        gpu = {}
        for t in set(tenants) | set(queued) | set(running) | set(servers):
            try:
                u = self.scheduler.usage(t)
                gpu[t] = u.group("any").gpu_milli if hasattr(u, "group") else 0
            except Exception:  # noqa: BLE001 - metrics must never break the loop
                gpu[t] = 0
        metrics.set_per_tenant(metrics.GPU_MILLI_IN_USE, gpu, tenants)

    # --------------------------------------------------------------- API helpers
    def view(self):
        """A scheduler holding the current placements: the leader's own, or (on another replica) one
        rebuilt from the database, cached for a second. For checks and capacity figures, never for admission."""
        if self.is_leader:
            return self.scheduler
        cached = getattr(self, "_view", None)
        if cached is not None and time.time() - cached[0] < 1.0:
            return cached[1]
        sched = self.new_scheduler()
        running = []
        with self.db.read() as s:
            for row in s.query(Job).filter(Job.state.in_((ADMITTED, RUNNING))):
                if row.assignment:
                    running.append((job_workload(row), Assignment.from_dict(row.assignment)))
            for a in s.query(Allocation).filter(Allocation.state == ALLOC_ALLOCATED):
                if a.assignment:
                    running.append((alloc_workload(a), Assignment.from_dict(a.assignment)))
        try:
            sched.restore(running)
        except ValueError as e:
            self.log.warning("view: cannot restore placements: %s", e)
        self._view = (time.time(), sched)
        return sched

    def check(self, w: Workload):
        return self.view().check(w)

    def pending_info(self, job_id: int) -> PendingInfo | None:
        return self.pending.get(job_wid(job_id))

    def alloc_pending_info(self, alloc_id: int) -> PendingInfo | None:
        return self.pending.get(alloc_wid(alloc_id))

    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None and self.election.is_leader
