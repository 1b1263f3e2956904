"""The controller: the job system's scheduling loop (one leader among the service's replicas).

The leader keeps the scheduling core (``job_runner.scheduling.Scheduler``) in memory, rebuilt from the
database when it becomes leader: running jobs and allocated server slices are restored, queued ones submitted
again in submission order, and the executor re-adopts the runs it finds. Each pass:
  1. takes in newly queued jobs, pending and released allocations, cancellations;
  2. asks the core for a decision; stops what it preempts; writes each admission (``queued -> admitted``,
     ``pending -> allocated``), *then* starts the jobs on the executor and writes ``admitted -> running``;
  3. polls the running jobs (progress, result, timeout), writes final states, retries what the job's retry
     policy allows, and releases their slices; now and then asks the executor to stop orphaned runs.

Threads: everything that touches the database or the scheduler runs in the controller's own single worker
thread (so a 10,000-pending pass never blocks the event loop, and nothing else ever touches the live
scheduler); executor calls run on the event loop. The API reads through ``ReadModel`` (never the live
scheduler): see docs/architecture.md, "Controller".
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update
from traitlets import Bool, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from job_runner.db import ADMITTED, ALLOC_ALLOCATED, QUEUED, RUNNING, Allocation, Job
from job_runner.db.tenants import load_tenants, tenants_version
from job_runner.scheduling import Assignment, Scheduler, Verdict, Workload
from job_runner.scheduling.state import split_restorable

from job_runner.accounting import Accounting  # accounting (issue 15 A)

from . import metrics
from .allocations import Allocations
from .election import LeaderElection
from .jobs import Jobs
from .readmodel import PendingInfo, ReadModel
from .retention import JobRetention
from .workloads import JOB, SERVER, Registry, WorkloadRef, job_workload, server_workload


class Controller(LoggingConfigurable):
    """Admits queued workloads through the scheduling core and drives the executor."""

    tick_interval_s = Float(1.0, help="Seconds between scheduling passes (a submission wakes it earlier).").tag(config=True)
    lease_ttl_s = Float(10.0, help="SQLite only: a leader lease not renewed for this long may be taken over.").tag(config=True)
    replica_id = Unicode(help="This replica's name in leases and job events (default: host-pid).").tag(config=True)
    max_admissions_per_tick = Integer(
        2000, help="Admissions written per pass at most (keeps a pass short with a huge queue)."
    ).tag(config=True)
    progress_write_interval_s = Float(1.0, help="Write a running job's progress at most this often.").tag(config=True)
    reconcile_interval_s = Float(
        60.0, help="Seconds between asks to the executor to stop runs the database does not know (orphans: "
        "e.g. a Kubernetes Job whose cancel was lost); 0 turns it off."
    ).tag(config=True)
    node_health_interval_s = Float(
        5.0, help="Seconds between asks to the executor which nodes cannot take new work (Kubernetes: not Ready, "
        "cordoned, tainted unreachable / not-ready / out-of-service): the core places nothing there until they "
        "can again, so a job whose node died is retried on another. 0 turns it off (the inventory decides)."
    ).tag(config=True)
    policy = Unicode("default", help="Placement policy of the scheduling core (job_runner.scheduling.POLICIES).").tag(config=True)
    preemption = Bool(False, help="Let emergency workloads preempt lower-priority jobs.").tag(config=True)
    lost_run_restarts = Integer(2, help="""Restarts of a job whose run the platform lost — its pod deleted by
        someone other than the service, evicted (a node drain), or its node gone — whatever the job's own
        max_retries (it only counts failures of the user's run). The restart resumes from the job's checkpoint
        folder where it has one (KubernetesExecutor.checkpoint_claim). 0: only the job's retry policy.""").tag(config=True)
    view_ttl_s = Float(1.0, help="Seconds the API's read model (quota and capacity checks) may be stale "
                       "at most on a replica that is not the leader.").tag(config=True)

    @default("replica_id")
    def _replica_default(self):
        return f"{socket.gethostname()}-{os.getpid()}"

    def __init__(self, db, deployment, executor, **kwargs):
        super().__init__(**kwargs)
        self.db = db
        self.deployment = deployment
        self.executor = executor
        self.election = LeaderElection(db, self.replica_id, self.lease_ttl_s, self.log)
        self.scheduler: Scheduler | None = None  # the live core: touched in the worker thread only
        self.refs = Registry()
        self.jobs = Jobs(self)
        self.allocations = Allocations(self)
        self.read = ReadModel(db, self.new_scheduler, self.log, ttl_s=self.view_ttl_s)
        self.accounting = Accounting(db, deployment.inventory, parent=self)  # accounting (issue 15 A)
        self.retention = JobRetention(db, getattr(executor, "jobs_dir", None), self.replica_id, parent=self)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="controller")
        self._tenants_version = None
        self._wake = asyncio.Event()
        self._pass_done = asyncio.Event()
        self._stopped = False
        self._running = False
        self._tick_lock = asyncio.Lock()
        self._last_reconcile: float | None = None
        self._last_node_health = -float("inf")
        self._loop = None
        self.last_tick_at = 0.0
        self.ticks = 0
        # A failing pass: /health answers 503 with this until a pass succeeds (docs/hub.md, "Health").
        self.failing: dict | None = None
        self.pass_failures = 0
        self._stale_handles: list = []  # runs of jobs whose placement is gone: stopped by the next tick
        executor.notify = self.wake

    # ------------------------------------------------------------------ public surface
    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None and self.election.is_leader

    def wake(self) -> None:
        """Something changed in the database (any thread): run a pass soon."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def check(self, w: Workload) -> Verdict:
        return self.read.check(w)

    def view(self) -> Scheduler:
        """A read-only scheduler rebuilt from the database (checks, quota_left, free_capacity)."""
        return self.read.view()

    def pending_info(self, job_id: int) -> PendingInfo | None:
        return self.read.pending_info(JOB, job_id)

    def alloc_pending_info(self, alloc_id: int) -> PendingInfo | None:
        return self.read.pending_info(SERVER, alloc_id)

    async def wait_for_pass(self, timeout_s: float) -> bool:
        """Wake the loop and wait for the end of the next pass (False: none ended within ``timeout_s``)."""
        done = self._pass_done
        self.wake()
        try:
            await asyncio.wait_for(done.wait(), timeout=timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            while not self._stopped:
                try:
                    await self.tick()
                except Exception as e:  # noqa: BLE001 - the loop must survive a bad pass; it is logged
                    self._pass_failed(e)
                    await self.in_worker(self._reset)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.tick_interval_s)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
        finally:
            await self.in_worker(self.election.release)
            self._running = False
            self._worker.shutdown(wait=False)

    def _pass_failed(self, e: Exception) -> None:
        """Count and log a failed pass; /health reports the loop as failing until one succeeds."""
        self.log.exception("scheduling pass failed")
        self.pass_failures += 1
        metrics.PASS_FAILURES.inc()
        reason = f"{type(e).__name__}: {e}"[:500]
        prev = self.failing or {}
        self.failing = {"reason": reason, "since": prev.get("since") or time.time(),
                        "failures": prev.get("failures", 0) + 1}

    def stop(self) -> None:
        """Stop the loop and give the leadership back (at once, or as run_forever ends). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._running:
            self._wake.set()
        else:
            self._worker.submit(self.election.release).result()
            self._worker.shutdown(wait=False)

    # ------------------------------------------------------------------ used by the parts
    def in_worker(self, fn, *args):
        """Run ``fn`` in the controller's worker thread (database, scheduler)."""
        return asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def new_scheduler(self, tenants) -> Scheduler:
        return Scheduler(self.deployment.inventory, tenants, policy=self.policy, preemption=self.preemption)

    def profile(self, slug):
        try:
            return self.deployment.profiles.get(slug)
        except KeyError:
            return None

    def give_back(self, w: Workload) -> None:
        """Queue again a workload accepted before (an admission not written, a job already stored)."""
        v = self.scheduler.requeue(w)
        if not v.ok:
            self.log.warning("workload %s cannot be queued again: %s", w.id, v.message)

    # ------------------------------------------------------------------ one pass
    async def tick(self) -> None:
        async with self._tick_lock:
            self._loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            was_leader = self.scheduler is not None
            if not await self.in_worker(self.election.check):
                if was_leader:
                    self.log.warning("lost the scheduler leadership")
                    await self.in_worker(self._reset)
                metrics.IS_LEADER.set(0)
                return
            metrics.IS_LEADER.set(1)
            active = await self.in_worker(self._db_prepare)
            if self._stale_handles:
                handles, self._stale_handles = self._stale_handles, []
                await self.jobs.stop_runs(handles)
            if active is not None:
                await self.jobs.adopt(active)
            await self.jobs.handle_cancels()
            await self._node_health()
            await self._schedule()
            await self.jobs.poll()
            await self._reconcile()
            self.retention.maybe_start()  # old finished jobs and their files, in its own thread
            await self.in_worker(self._db_metrics)
            self.last_tick_at = time.time()
            self.ticks += 1
            if self.failing is not None:
                self.log.info("scheduling pass succeeded again after %d failure(s)", self.failing["failures"])
                self.failing = None
            done, self._pass_done = self._pass_done, asyncio.Event()
            done.set()
            metrics.TICK_SECONDS.observe(time.perf_counter() - t0)

    def _reset(self) -> None:
        self._last_node_health = -float("inf")  # a new leader asks at once
        self.scheduler = None
        self.refs.clear()
        self.read.publish_pending({})

    def _db_prepare(self):
        """Build the scheduler if needed (returns the active jobs to adopt then), reload changed tenants,
        take in what is new."""
        version = tenants_version(self.db)
        active = None
        if self.scheduler is None:
            active = self._db_rebuild()
        elif version != self._tenants_version:
            self.scheduler.set_tenants(load_tenants(self.db))  # quota changes apply from this pass
            self.read.invalidate()
        self._tenants_version = version
        arrivals = self.jobs.db_take_in() | self.allocations.db_take_in()
        # --- accounting (issue 15 A): repair intervals after a rebuild / now and then; the budget hold ---
        if active is not None:
            self.accounting.sync_all()
        else:
            self.accounting.maybe_sync()
        # new work of a tenant with a holding budget is checked against its spend now, not up to
        # budget_check_interval_s later: a job submitted after the budget ran out must not slip through
        self.scheduler.hold(self.accounting.held_tenants(arrivals=arrivals))
        # --- end accounting ---
        return active

    def _db_rebuild(self):
        self.log.info("building the scheduler from the database")
        sched = self.new_scheduler(load_tenants(self.db))
        refs = Registry()
        running = []
        with self.db.read() as s:
            for row in s.query(Job).filter(Job.state.in_((ADMITTED, RUNNING))).order_by(Job.id):
                if row.assignment:
                    running.append((job_workload(row, refs.add(WorkloadRef(JOB, row.id))),
                                    Assignment.from_dict(row.assignment)))
            for a in s.query(Allocation).filter(Allocation.state == ALLOC_ALLOCATED).order_by(Allocation.id):
                if a.assignment:
                    running.append((server_workload(a, refs.add(WorkloadRef(SERVER, a.id))),
                                    Assignment.from_dict(a.assignment)))
        running, stale = split_restorable(self.deployment.inventory, running)
        if stale:  # one bad row must not make every pass fail: marked, the rest restored
            self._db_mark_stale(stale, refs)
        sched.restore(running)
        self.scheduler, self.refs = sched, refs
        self.read.publish_pending({})
        self.read.invalidate()
        with self.db.session() as s:  # everything queued is submitted again, in submission order
            s.execute(update(Job).where(Job.state == QUEUED, Job.enqueued == 1).values(enqueued=0))
        return self.jobs.db_active()

    def _db_mark_stale(self, stale, refs) -> None:
        """Workloads whose stored placement no longer exists in the inventory (a node or GPU removed, or a
        conflict with another stored placement): jobs are queued again (their runs stopped by the tick),
        server slices released, each with the reason in its history and the log."""
        for w, a, reason in stale:
            ref = refs.forget(w.id)
            metrics.STALE_PLACEMENTS.labels(kind=ref.kind).inc()
            self.log.warning("%s %s of %s/%s: placement %s is gone (%s)", ref.kind, ref.row_id, w.tenant, w.user,
                             a.to_dict(), reason)
            if ref.kind == JOB:
                handle = self.jobs.db_requeue_stale(ref.row_id, reason)
                if handle is not None:
                    self._stale_handles.append((ref.row_id, handle))
            else:
                self.allocations.db_release_stale(ref.row_id, reason)

    async def _schedule(self) -> None:
        preempted, admitted = await self.in_worker(self._db_decide)
        if preempted:
            await self.jobs.preempt(preempted)
        to_start = await self.in_worker(self._db_admit, admitted)
        if to_start:
            await self.jobs.start_many(await self.in_worker(self.jobs.db_specs, to_start))

    def _db_decide(self):
        """The core's pass (the long part with a big queue: here, off the event loop)."""
        decision = self.scheduler.schedule(time.time())
        ref = self.refs.ref
        self.read.publish_pending({ref(p.workload.id): PendingInfo(p.position, p.estimated_start, p.reason,
                                                                         p.earliest_start, p.latest_start)
                                   for p in decision.pending})
        preempted_jobs, preempted_servers = [], []
        for wid in decision.preempt:
            r = ref(wid)
            (preempted_jobs if r.kind == JOB else preempted_servers).append(r.row_id)
        if preempted_servers:
            with self.db.session() as s:
                self.allocations.db_preempted(s, preempted_servers)
        admitted = decision.admitted[: self.max_admissions_per_tick]
        for w, _ in decision.admitted[self.max_admissions_per_tick:]:
            self.give_back(w)  # not written this pass: its slice back, its place in the queue kept
        return preempted_jobs, [(ref(w.id), w, a) for w, a in admitted]

    def _db_admit(self, admitted) -> list[int]:
        if not admitted:
            return []
        self.read.invalidate()  # placements change: the API's capacity figures are rebuilt
        with self.db.session() as s:
            servers = [(r.row_id, w, a) for r, w, a in admitted if r.kind == SERVER]
            self.allocations.db_write_admissions(s, servers)
            written = self.jobs.db_write_admissions(s, [(r.row_id, w, a) for r, w, a in admitted if r.kind == JOB])
            self.accounting.servers(s, [x[0] for x in servers])  # accounting (issue 15 A): same transaction
            self.accounting.jobs(s, written)
            return written

    async def _node_health(self) -> None:
        now = time.monotonic()
        if self.node_health_interval_s <= 0 or now - self._last_node_health < self.node_health_interval_s:
            return
        self._last_node_health = now
        try:
            down = await self.executor.unavailable_nodes()
        except Exception as e:  # noqa: BLE001 - the API server briefly away: keep what we knew
            self.log.warning("could not read which nodes can take work: %s", e)
            return
        if down is None:
            return
        for name in await self.in_worker(self.scheduler.set_unavailable, down):
            self.log.warning("node %s %s", name, "takes no new work: its cluster says it is down, unreachable or "
                             "cordoned" if name in down else "takes new work again")

    async def _reconcile(self) -> None:
        if self.reconcile_interval_s <= 0 or (self._last_reconcile is not None and
                                               time.monotonic() - self._last_reconcile < self.reconcile_interval_s):
            return
        self._last_reconcile = time.monotonic()

        def live():
            with self.db.read() as s:
                return {(r.id, r.attempt) for r in s.query(Job.id, Job.attempt).filter(Job.state.in_((ADMITTED, RUNNING)))}

        try:
            stopped = await self.executor.reconcile(await self.in_worker(live))
        except Exception as e:  # noqa: BLE001 - reconciliation is best effort; the next one tries again
            self.log.warning("reconcile failed: %s", e)
            return
        if stopped:
            self.log.warning("stopped %d orphaned run(s): %s", len(stopped), ", ".join(stopped))

    def _db_metrics(self) -> None:
        metrics.update_gauges(self.db, self.scheduler, [t.name for t in self.scheduler.tenants.values()])
