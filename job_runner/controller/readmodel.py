"""Read models for the API: what the service answers about the queue without touching the live scheduler.

- ``pending_info``: each waiting workload's place, estimated start and reason, as the leader's last pass
  published it (an immutable snapshot swapped in whole after each pass; on other replicas: none).
- ``view()``: a scheduler rebuilt from the database (running jobs, allocated and pending servers) for
  capacity figures (``quota_left``, ``free_capacity``); ``check(w)`` uses a lighter one with the servers only
  (a check looks at no usage but the user's servers: rebuilding it costs nothing even with thousands of
  running jobs). Both are cached up to ``ttl_s`` and dropped at once by ``invalidate()`` (the controller
  calls it when a pass changes placements, servers or tenants). Never used for admission.

Thread-safe: the API may call these from worker threads while the controller's pass runs in its own.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from job_runner.db import ACTIVE_STATES, ALLOC_ALLOCATED, ALLOC_PENDING, Allocation, Job
from job_runner.db.tenants import load_tenants
from job_runner.scheduling import Assignment, Scheduler, Verdict, Workload

from .workloads import JOB, SERVER, Registry, WorkloadRef, job_workload, server_workload


@dataclass(frozen=True)
class PendingInfo:
    position: int
    estimated_start: float | None
    reason: str
    earliest_start: float | None = None  # the likely range around estimated_start (estimates.py)
    latest_start: float | None = None


class ReadModel:
    def __init__(self, db, new_scheduler, log, ttl_s: float = 1.0):
        self.db = db
        self.new_scheduler = new_scheduler  # tenants -> an empty Scheduler of the pool
        self.log = log
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._views: dict[bool, tuple[float, Scheduler]] = {}  # with jobs? -> (built at, scheduler)
        self._pending: dict[WorkloadRef, PendingInfo] = {}

    # -- pending ---------------------------------------------------------------------------------
    def publish_pending(self, pending: dict[WorkloadRef, PendingInfo]) -> None:
        self._pending = pending  # one reference swap: readers see the old or the new table, whole

    def pending_info(self, kind: str, row_id: int) -> PendingInfo | None:
        return self._pending.get(WorkloadRef(kind, row_id))

    # -- the view --------------------------------------------------------------------------------
    def invalidate(self) -> None:
        self._views = {}

    def view(self, jobs: bool = True) -> Scheduler:
        with self._lock:
            cached = self._views.get(jobs)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                return cached[1]
            at = time.monotonic()
            sched = self._build(jobs)
            self._views[jobs] = (at, sched)
            return sched

    def check(self, w: Workload) -> Verdict:
        return self.view(jobs=False).check(w)

    def _build(self, jobs: bool) -> Scheduler:
        sched = self.new_scheduler(load_tenants(self.db))
        refs = Registry()
        running, pending = [], []
        with self.db.read() as s:
            rows = s.query(Job.id, Job.tenant, Job.user, Job.priority, Job.request, Job.created_at,
                           Job.expected_duration_s, Job.assignment).filter(Job.state.in_(ACTIVE_STATES)) if jobs else []
            for row in rows:
                if row.assignment:
                    running.append((job_workload(row, refs.add(WorkloadRef(JOB, row.id))),
                                    Assignment.from_dict(row.assignment)))
            for a in s.query(Allocation).filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED))):
                w = server_workload(a, refs.add(WorkloadRef(SERVER, a.id)))
                if a.state == ALLOC_ALLOCATED and a.assignment:
                    running.append((w, Assignment.from_dict(a.assignment)))
                elif a.state == ALLOC_PENDING:
                    pending.append(w)  # counts towards the user's servers, as in the leader's scheduler
        try:
            sched.restore(running)
        except ValueError as e:
            self.log.warning("read model: cannot restore placements: %s", e)
        for w in pending:
            sched.submit(w)
        return sched
