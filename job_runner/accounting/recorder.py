"""Usage intervals, written in the transaction of the state change that starts or ends a workload.

A job attempt's interval opens at its admission (``queued -> admitted``: the slice is held from then on) and
closes when it leaves the active states (finished, failed, cancelled, preempted, requeued); a server's opens
at ``pending -> allocated`` and closes at its release. ``sync_jobs``/``sync_servers`` derive both ends from
the stored event times (``job_events.at``, ``allocations.allocated_at``/``released_at``), never from the
clock of whoever runs them, so the controller's hooks (same transaction) and the repair after a crash
(``sync_all``, at every rebuild and every ``sync_interval_s``) write the same numbers. The unique key
(kind, workload, attempt) makes a second open impossible; a close happens once (``end_ts IS NULL`` guard).
"""
from __future__ import annotations

import time

from sqlalchemy import and_, select, update
from traitlets import Float
from traitlets.config import LoggingConfigurable

from job_runner.db import ACTIVE_STATES, ADMITTED, ALLOC_ALLOCATED, Allocation, Job, JobEvent
from job_runner.db.accounting import UsageInterval
from job_runner.db.ops import epoch

from .charge import inventory_models, slice_charge
from .rollup import DAY, adjust, roll_up

JOB, SERVER = "job", "server"
CHUNK = 900
COLS = ("id", "kind", "workload_id", "attempt", "tenant", "user", "gpu_model", "gpus", "cpu", "memory_gib",
        "start_ts", "end_ts", "idle_s", "used_gpu_s")


def _chunks(ids):
    ids = sorted(set(ids))
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def _row(iv) -> dict:
    return {c: getattr(iv, c) for c in COLS}


def _open_intervals(s, kind, ids) -> dict:
    out = {}
    for part in _chunks(ids):
        for iv in s.query(UsageInterval).filter(UsageInterval.kind == kind, UsageInterval.workload_id.in_(part),
                                                UsageInterval.end_ts.is_(None)):
            out.setdefault(iv.workload_id, []).append(iv)
    return out


def _existing(s, kind, ids) -> set:
    have = set()
    for part in _chunks(ids):
        have.update(s.execute(select(UsageInterval.workload_id, UsageInterval.attempt).where(
            UsageInterval.kind == kind, UsageInterval.workload_id.in_(part))).all())
    return {tuple(x) for x in have}


def _close(s, ivs_ends: list) -> None:
    """Close [(interval, end_ts, reason)] once each, and add them to the daily rollup."""
    closed = []
    for iv, end, reason in ivs_ends:
        end = max(end, iv.start_ts)
        res = s.execute(update(UsageInterval).where(UsageInterval.id == iv.id, UsageInterval.end_ts.is_(None))
                        .values(end_ts=end, long=(end - iv.start_ts) > DAY, end_reason=reason)
                        .execution_options(synchronize_session=False))
        if res.rowcount == 1:
            closed.append(dict(_row(iv), end_ts=end))
    roll_up(s, closed)


def _open(s, rows: list[dict]) -> None:
    if rows:
        s.execute(UsageInterval.__table__.insert(), [dict(r, long=False, idle_s=0.0) for r in rows])


def sync_jobs(s, ids, model_of=None, now: float | None = None) -> None:
    """Make the intervals of jobs ``ids`` agree with their rows and events, in session ``s``."""
    ids = list(ids)
    if not ids:
        return
    now = time.time() if now is None else now
    jobs = {}
    for part in _chunks(ids):
        jobs.update({r.id: r for r in s.query(Job.id, Job.state, Job.attempt, Job.tenant, Job.user, Job.profile,
                                               Job.request, Job.assignment, Job.admitted_at, Job.finished_at)
                     .filter(Job.id.in_(part))})
    events: dict[int, list] = {}
    for part in _chunks(ids):
        for e in s.query(JobEvent.job_id, JobEvent.at, JobEvent.to_state, JobEvent.attempt).filter(
                JobEvent.job_id.in_(part)).order_by(JobEvent.id):
            events.setdefault(e.job_id, []).append(e)
    opened = _open_intervals(s, JOB, ids)
    closes = []
    for job_id, ivs in opened.items():
        row = jobs.get(job_id)
        for iv in ivs:
            if row is not None and row.state in ACTIVE_STATES and row.attempt == iv.attempt:
                continue
            end, reason = None, None
            for e in events.get(job_id, ()):
                if e.attempt == iv.attempt and e.to_state not in ACTIVE_STATES and epoch(e.at) >= iv.start_ts - 1e-6:
                    end, reason = epoch(e.at), e.to_state
                    break
            if end is None:  # no event (row removed, or an attempt overwritten): the row's end, else now
                end = epoch(row.finished_at) if row is not None and row.finished_at else now
                reason = reason or "gone"
            closes.append((iv, end, reason))
    _close(s, closes)
    have = _existing(s, JOB, [r.id for r in jobs.values() if r.state in ACTIVE_STATES])
    new = []
    for r in jobs.values():
        if r.state not in ACTIVE_STATES or not r.assignment or (r.id, r.attempt) in have:
            continue
        start = None
        for e in events.get(r.id, ()):
            if e.to_state == ADMITTED and e.attempt == r.attempt:
                start = epoch(e.at)
        if start is None:
            start = epoch(r.admitted_at) or now
        new.append({"kind": JOB, "workload_id": r.id, "attempt": r.attempt, "tenant": r.tenant, "user": r.user,
                    "profile": r.profile or "", "start_ts": start,
                    **slice_charge(r.request, r.assignment, model_of).columns()})
    _open(s, new)


def sync_servers(s, ids, model_of=None, now: float | None = None) -> None:
    """Make the intervals of allocations ``ids`` agree with their rows, in session ``s``."""
    ids = list(ids)
    if not ids:
        return
    now = time.time() if now is None else now
    rows = {}
    for part in _chunks(ids):
        rows.update({r.id: r for r in s.query(Allocation.id, Allocation.state, Allocation.tenant, Allocation.user,
                                               Allocation.profile, Allocation.request, Allocation.assignment,
                                               Allocation.allocated_at, Allocation.released_at,
                                               Allocation.release_reason).filter(Allocation.id.in_(part))})
    closes = []
    for alloc_id, ivs in _open_intervals(s, SERVER, ids).items():
        row = rows.get(alloc_id)
        if row is not None and row.state == ALLOC_ALLOCATED:
            continue
        end = epoch(row.released_at) if row is not None and row.released_at else now
        reason = "gone" if row is None else (row.release_reason or "released")[:64]
        closes.extend((iv, end, reason) for iv in ivs)
    _close(s, closes)
    have = _existing(s, SERVER, [r.id for r in rows.values() if r.state == ALLOC_ALLOCATED])
    _open(s, [{"kind": SERVER, "workload_id": r.id, "attempt": 0, "tenant": r.tenant, "user": r.user,
               "profile": r.profile or "", "start_ts": epoch(r.allocated_at) or now,
               **slice_charge(r.request, r.assignment, model_of).columns()}
              for r in rows.values() if r.state == ALLOC_ALLOCATED and r.assignment and (r.id, 0) not in have])


def sync_all(s, model_of=None, now: float | None = None) -> None:
    """The repair (after a crash, or a state change written without a hook): every open interval whose
    workload is no longer active is closed at its event time; every active workload without its interval
    gets one from its admission time."""
    open_ = s.execute(select(UsageInterval.kind, UsageInterval.workload_id).where(UsageInterval.end_ts.is_(None))).all()
    jobs = {w for k, w in open_ if k == JOB}
    servers = {w for k, w in open_ if k == SERVER}
    iv = UsageInterval
    jobs.update(s.execute(select(Job.id).outerjoin(iv, and_(iv.kind == JOB, iv.workload_id == Job.id,
                                                            iv.attempt == Job.attempt))
                          .where(Job.state.in_(ACTIVE_STATES), iv.id.is_(None))).scalars())
    servers.update(s.execute(select(Allocation.id).outerjoin(iv, and_(iv.kind == SERVER, iv.workload_id == Allocation.id))
                             .where(Allocation.state == ALLOC_ALLOCATED, iv.id.is_(None))).scalars())
    sync_jobs(s, jobs, model_of, now)
    sync_servers(s, servers, model_of, now)


def _latest(s, kind: str, workload_id: int):
    return s.query(UsageInterval).filter(UsageInterval.kind == kind, UsageInterval.workload_id == workload_id) \
        .order_by(UsageInterval.attempt.desc()).with_for_update().first()


def add_idle(s, kind: str, workload_id: int, seconds: float) -> bool:
    """For GPU monitoring / culling (issue 15 B): ``seconds`` more of the workload's latest interval were idle
    (held, GPU activity under the threshold). Counted in reports as idle-held GPU-hours (× its GPUs)."""
    iv = _latest(s, kind, workload_id)
    if iv is None or seconds <= 0:
        return False
    before = _row(iv)
    iv.idle_s = (iv.idle_s or 0.0) + float(seconds)
    if before["end_ts"] is not None:
        adjust(s, before, _row(iv))
    return True


def set_used_gpu_s(s, kind: str, workload_id: int, used_gpu_s: float) -> bool:
    """For GPU monitoring: the measured GPU-seconds the workload's latest interval used (utilisation ×
    time × its GPUs). Cost then charges max(request, usage) (OpenCost's rule)."""
    iv = _latest(s, kind, workload_id)
    if iv is None:
        return False
    before = _row(iv)
    iv.used_gpu_s = float(used_gpu_s)
    if before["end_ts"] is not None:
        adjust(s, before, _row(iv))
    return True


class Accounting(LoggingConfigurable):
    """The controller's accounting part: hooks in its transactions, the periodic repair, the budget hold."""

    sync_interval_s = Float(30.0, help="Seconds between repairs of the usage intervals (closing intervals "
                            "of workloads that ended without a hook, opening missing ones); 0: only at rebuild."
                            ).tag(config=True)
    budget_check_interval_s = Float(5.0, help="Seconds between checks of the tenants' month-to-date spend "
                                    "against their budgets (the over-budget hold).").tag(config=True)

    def __init__(self, db, inventory=None, **kwargs):
        super().__init__(**kwargs)
        self.db = db
        self.model_of = inventory_models(inventory) if inventory is not None else None
        self._last_sync = None
        self._last_budget = None
        self._budget_key = None
        self._holding_budgets: frozenset[str] = frozenset()
        self.held: dict[str, str] = {}

    def jobs(self, s, ids) -> None:
        sync_jobs(s, ids, self.model_of)

    def servers(self, s, ids) -> None:
        sync_servers(s, ids, self.model_of)

    def sync_all(self) -> None:
        with self.db.session() as s:
            sync_all(s, self.model_of)
        self._last_sync = time.monotonic()

    def maybe_sync(self) -> None:
        if self._last_sync is None or (self.sync_interval_s > 0 and
                                       time.monotonic() - self._last_sync >= self.sync_interval_s):
            self.sync_all()

    def held_tenants(self, force: bool = False, arrivals=()) -> dict[str, str]:
        """Tenants whose budget holds new work now -> why (refreshed every ``budget_check_interval_s``, at
        once when a budget changed, and at once when new work (``arrivals``: its tenants) comes for a tenant
        whose budget can hold, so the check costs a report only where a hold could apply)."""
        from .budgets import budgets_key, hold_reasons, holding_budgets

        key = budgets_key(self.db)
        if key != self._budget_key:
            self._holding_budgets = holding_budgets(self.db) if key[0] else frozenset()
        if force or key != self._budget_key or self._last_budget is None or \
                time.monotonic() - self._last_budget >= self.budget_check_interval_s or \
                not self._holding_budgets.isdisjoint(arrivals):
            self.held = hold_reasons(self.db) if key[0] else {}
            self._budget_key, self._last_budget = key, time.monotonic()
        return self.held
