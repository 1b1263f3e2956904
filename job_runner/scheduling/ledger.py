"""The ledger: the one record of the workloads the scheduler knows and of what they hold.

Like Kueue's cache of admitted workloads, it is the single source of every usage figure. Its entries are
the pending workloads (by id) and the running ones (:class:`~.workloads.Running`: where, since when, how
much of it is borrowed), together with the cluster state their assignments take. The per-tenant figures
the scheduler reads (what running work holds per resource group, borrowed GPU, running jobs, servers per
user, queued jobs) are sums over those entries, and the running entries' expected ends are kept sorted
for the estimates; both form a materialised view that changes in one place only, :meth:`Ledger._count`,
called with +1/-1 for each entry that enters or leaves, so it equals a recount at every moment
(:meth:`Ledger.consistent`; the tests check it after random operations). Admission would be O(running)
per decision if it recounted, hence the view.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType

from .assignment import Assignment
from .inventory import Inventory
from .slices import Resources, SliceRequest
from .state import ClusterState, Placement
from .tenants import ANY
from .workloads import Running, TenantUsage, Workload


@dataclass
class Tally:
    """Sums over one tenant's entries. Read it, never change it: only the ledger does."""

    by_group: dict = field(default_factory=dict)  # running: resource group -> Resources
    borrowed_milli: int = 0  # running: GPU milli lent by the cohort
    running_jobs: int = 0
    servers_running: Counter = field(default_factory=Counter)  # user -> running servers
    pending: int = 0
    queued_jobs: int = 0  # pending jobs
    servers_pending: Counter = field(default_factory=Counter)  # user -> pending servers

    def group(self, name: str) -> Resources:
        return self.by_group.get(name, _ZERO)

    def servers(self, user: str) -> int:
        """Servers of ``user``, running and pending (the per-user server limit counts both)."""
        return self.servers_running.get(user, 0) + self.servers_pending.get(user, 0)

    def normalised(self) -> tuple:
        """The figures with zero entries dropped (for comparing a view with a recount)."""
        return ({g: r for g, r in self.by_group.items() if r != _ZERO}, self.borrowed_milli, self.running_jobs,
                +self.servers_running, self.pending, self.queued_jobs, +self.servers_pending)


_ZERO = Resources()
_NOTHING = Tally()  # what a tenant without entries holds (shared, never changed)


class Ledger:
    """Pending and running workloads, the cluster state of the running ones, and the sums over both.

    ``pending`` and ``running`` are read-only views; change them through :meth:`queue`, :meth:`unqueue`,
    :meth:`start`, :meth:`stop` and :meth:`restore`. The durations are assumed for running work without
    ``expected_duration_s`` (its expected end orders :attr:`ends`).
    """

    def __init__(self, inventory: Inventory, default_job_s: float, default_server_s: float):
        self.inventory = inventory
        self.default_job_s = default_job_s
        self.default_server_s = default_server_s
        self.state = ClusterState(inventory)
        self.capacity = Resources(int(self.state.gpu_exists.sum()) * 1000, int(self.state.cpu_cap.sum()),
                                  int(self.state.mem_cap.sum()))
        self._pending: dict[str, Workload] = {}
        self._running: dict[str, Running] = {}
        self._tallies: dict[str, Tally] = {}
        # (expected end, GPU milli, tenant, id) of every running entry: estimates walk them in order each
        # pass. Sorted lazily: ends added since the last read wait in _new_ends, merged by one sort (cheap:
        # a sorted run plus a short tail), so admitting thousands in one pass stays O(1) each.
        self._ends: list[tuple[float, int, str, str]] = []
        self._new_ends: list[tuple[float, int, str, str]] = []
        self.pending = MappingProxyType(self._pending)
        self.running = MappingProxyType(self._running)

    # ---- reading -------------------------------------------------------------------------------------
    def tally(self, tenant: str) -> Tally:
        """The live sums of ``tenant`` (an empty tally if it has no entries)."""
        return self._tallies.get(tenant, _NOTHING)

    @property
    def ends(self) -> list[tuple[float, int, str, str]]:
        """(expected end, GPU milli, tenant, id) of the running entries, earliest first (do not change it)."""
        if self._new_ends:
            self._ends.extend(self._new_ends)
            self._new_ends.clear()
            self._ends.sort()
        return self._ends

    def expected_end(self, r: Running) -> float:
        d = r.workload.expected_duration_s
        if d is None:
            d = self.default_server_s if r.workload.kind == "server" else self.default_job_s
        return r.started_at + d

    def tenants(self) -> set[str]:
        """Tenants with at least one pending or running entry."""
        return {t for t, x in self._tallies.items() if x.pending or x.running_jobs or +x.servers_running}

    def usage(self, tenant: str) -> TenantUsage:
        """A snapshot of ``tenant``'s sums (servers per user: running and pending)."""
        x = self.tally(tenant)
        servers = +(x.servers_running + x.servers_pending)
        return TenantUsage(dict(x.by_group), x.borrowed_milli, dict(servers), x.running_jobs, x.queued_jobs,
                           x.pending)

    def group_of(self, a: Assignment) -> str:
        """The resource group charged besides "any": the model of the GPUs used (or "any")."""
        if not a.gpu_indices:
            return ANY
        node = self.inventory.nodes[self.inventory.by_name[a.node]]
        return node.gpus[a.gpu_indices[0]].model

    # ---- changes -------------------------------------------------------------------------------------
    def queue(self, w: Workload) -> None:
        """Record ``w`` as pending (replacing a pending entry of the same id)."""
        self.unqueue(w.id)
        self._pending[w.id] = w
        self._count(w, None, +1)

    def unqueue(self, workload_id: str) -> Workload | None:
        """Drop a pending entry; returns it (None if it is not pending)."""
        w = self._pending.pop(workload_id, None)
        if w is not None:
            self._count(w, None, -1)
        return w

    def start(self, w: Workload, req: SliceRequest, placement: Placement, now: float,
              borrowed_milli: int = 0) -> Assignment:
        """Take the capacity of ``req`` (``w``'s request, maybe narrowed to allowed GPU models) at
        ``placement`` and record ``w`` as running (no longer pending)."""
        a = self.state.allocate(req, placement)
        self.unqueue(w.id)
        r = Running(w, a, now, self.group_of(a), borrowed_milli)
        self._running[w.id] = r
        self._count(w, r, +1)
        return a

    def stop(self, workload_id: str) -> Running | None:
        """Give back a running entry's capacity and drop it; returns it (None if it is not running)."""
        r = self._running.pop(workload_id, None)
        if r is not None:
            self.state.free(r.workload.request, r.assignment)
            self._count(r.workload, r, -1)
        return r

    def restore(self, running: list, infer_borrowed) -> None:
        """Replace the running entries and the cluster state with ``[(Workload, Assignment)]`` (after a
        restart; started_at = submitted_at). ``infer_borrowed(list[Running]) -> {id: milli}`` says which
        of them hold borrowed quota. Pending entries of those ids are dropped, other pending ones kept.
        Raises ValueError, changing nothing, if the assignments conflict or name unknown nodes."""
        state = ClusterState(self.inventory)
        entries: dict[str, Running] = {}
        for w, a in running:
            if isinstance(a, dict):
                a = Assignment.from_dict(a)
            try:
                state.take(w.request, a)
            except (ValueError, KeyError, IndexError) as e:
                raise ValueError(f"cannot restore {w.id!r} at {a.to_dict()}: {e}") from None
            entries[w.id] = Running(w, a, w.submitted_at, self.group_of(a))
        borrowed = infer_borrowed(list(entries.values()))
        for wid, milli in borrowed.items():
            r = entries[wid]
            entries[wid] = Running(r.workload, r.assignment, r.started_at, r.group, milli)
        self.state = state
        self._running.clear()
        self._running.update(entries)
        for wid in entries:
            self._pending.pop(wid, None)
        self._tallies, self._ends = self._recount()
        self._new_ends = []

    # ---- the sums ------------------------------------------------------------------------------------
    def _count(self, w: Workload, r: Running | None, sign: int) -> None:
        """Add (+1) or remove (-1) one entry's share of its tenant's sums: a pending workload (``r`` None)
        or a running one. The only code that changes a tally or the ends."""
        x = self._tallies.get(w.tenant)
        if x is None:
            x = self._tallies[w.tenant] = Tally()
        server = w.kind == "server"
        if r is None:
            x.pending += sign
            if server:
                x.servers_pending[w.user] += sign
            else:
                x.queued_jobs += sign
            return
        c = r.charge
        end = (self.expected_end(r), c.gpu_milli, w.tenant, w.id)
        if sign > 0:
            self._new_ends.append(end)
        else:
            i = bisect.bisect_left(self._ends, end)
            if i < len(self._ends) and self._ends[i] == end:
                del self._ends[i]
            else:
                self._new_ends.remove(end)
        delta = Resources(sign * c.gpu_milli, sign * c.cpu_milli, sign * c.memory_mib)
        x.by_group[ANY] = x.group(ANY) + delta
        if r.group != ANY:
            x.by_group[r.group] = x.group(r.group) + delta
        x.borrowed_milli += sign * r.borrowed_milli
        if server:
            x.servers_running[w.user] += sign
        else:
            x.running_jobs += sign

    def _recount(self) -> tuple[dict[str, Tally], list]:
        """The sums and the ends computed afresh from the entries (what the live view must equal)."""
        live = self._tallies, self._ends, self._new_ends
        self._tallies, self._ends, self._new_ends = {}, [], []
        try:
            for w in self._pending.values():
                self._count(w, None, +1)
            for r in self._running.values():
                self._count(r.workload, r, +1)
            return self._tallies, sorted(self._new_ends)
        finally:
            self._tallies, self._ends, self._new_ends = live

    def consistent(self) -> bool:
        """Whether the live sums and ends equal a recount (a check for tests)."""
        fresh, ends = self._recount()
        names = set(fresh) | set(self._tallies)
        return ends == self.ends and all(self.tally(n).normalised() == fresh.get(n, _NOTHING).normalised()
                                          for n in names)
