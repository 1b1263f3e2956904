"""Workloads (servers and jobs) and the scheduler's answers about them."""
from __future__ import annotations

from dataclasses import dataclass, field

from .assignment import Assignment
from .slices import Resources, SliceRequest

WORKLOAD_KINDS = ("server", "job")
PRIORITIES = ("normal", "high", "emergency")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}


@dataclass(frozen=True)
class Workload:
    """Something that needs a slice: an interactive ``server`` or a notebook ``job``."""

    id: str
    tenant: str
    user: str
    kind: str
    priority: str
    request: SliceRequest
    submitted_at: float
    expected_duration_s: float | None = None
    # (shortest, longest) likely run time around expected_duration_s when it comes from past runs
    # (estimates.history_range); None: the user's own figure, taken as a range around it (estimates.py)
    duration_spread_s: tuple[float, float] | None = None

    @property
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.priority, -1)


@dataclass(frozen=True)
class Verdict:
    """Whether a workload may be queued at all; ``reason`` is a short code, ``message`` for humans.
    Codes: ok, invalid, unknown_tenant, forbidden, over_quota, never_fits, server_limit, queue_full,
    duplicate."""

    ok: bool
    reason: str = "ok"
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Pending:
    """A workload still waiting: its place in the admission order (1 = next), when it is expected to
    start (epoch seconds, an estimate from running workloads' expected ends; None when it depends on a
    duration nothing tells), the earliest and latest likely start, and why it waits:
    ``quota``, ``capacity``, ``window``, ``server_limit``, ``running_jobs``, or ``queued`` (behind others)."""

    workload: Workload
    position: int
    estimated_start: float | None
    reason: str
    earliest_start: float | None = None
    latest_start: float | None = None


@dataclass
class Decision:
    """The outcome of one :meth:`Scheduler.schedule` pass. Workloads in ``preempt`` have already been
    released inside the scheduler: the caller stops them (and requeues or fails them)."""

    admitted: list = field(default_factory=list)  # [(Workload, Assignment)]
    preempt: list = field(default_factory=list)  # [workload id]
    pending: list = field(default_factory=list)  # [Pending]


@dataclass(frozen=True)
class Running:
    """A placed workload as the scheduler's ledger records it."""

    workload: Workload
    assignment: Assignment
    started_at: float
    group: str  # the resource group charged besides "any" (GPU model, or "any")
    borrowed_milli: int = 0  # GPU milli of it beyond its tenant's own quota, lent by the cohort (reclaimable)

    @property
    def borrowed(self) -> bool:
        return self.borrowed_milli > 0

    @property
    def charge(self) -> Resources:
        return self.workload.request.charge()


@dataclass
class TenantUsage:
    """What a tenant holds now."""

    by_group: dict = field(default_factory=dict)  # group -> Resources
    borrowed_milli: int = 0
    servers_by_user: dict = field(default_factory=dict)
    running_jobs: int = 0
    queued_jobs: int = 0
    pending: int = 0

    def group(self, name: str) -> Resources:
        return self.by_group.get(name, Resources())

    def to_dict(self) -> dict:
        return {"by_group": {g: r.to_dict() for g, r in self.by_group.items()},
                "borrowed_milli": self.borrowed_milli, "servers_by_user": dict(self.servers_by_user),
                "running_jobs": self.running_jobs, "queued_jobs": self.queued_jobs, "pending": self.pending}
