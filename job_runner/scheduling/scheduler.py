"""The scheduler: one facade over the parts of the scheduling core, split as Kueue splits it.

- :mod:`.ledger` — the one record of pending and running workloads, the cluster state they hold, and
  every usage figure (sums over the entries);
- :mod:`.queueing` — the order of a pass: priority class, weighted dominant share, FIFO;
- :mod:`.quota` — quotas per resource group, cohorts lending idle GPU quota to jobs (borrowing limits);
- :mod:`.admission` — may a workload be queued (``check``), may it start now (windows, limits, quotas,
  allowed GPU models, a placement by the policy);
- :mod:`.preemption` — reclaim of lent quota, emergency preemption of lower-priority jobs;
- :mod:`.estimates` — position and estimated start of what still waits.

Pure: no I/O, no clock (``now`` is passed in). State changes only through the methods below.
"""
from __future__ import annotations

from .admission import Admission
from .estimates import estimate
from .inventory import Inventory
from .ledger import Ledger
from .policies import PlacementPolicy, make_policy
from .queueing import admission_order, dominant_share
from .quota import Quotas
from .slices import Resources, SliceRequest
from .state import ClusterState
from .tenants import ANY, Tenant
from .workloads import Decision, Verdict, Workload

DEFAULT_JOB_DURATION_S = 3600.0
DEFAULT_SERVER_DURATION_S = 8 * 3600.0


class Scheduler:
    """The one scheduler of the pool.

    ``tenants``: list or dict of :class:`Tenant`. ``policy``: a name from :data:`~.policies.POLICIES` or
    a :class:`PlacementPolicy`. ``preemption``: let emergency workloads preempt lower-priority jobs.
    Durations: assumed for running work without ``expected_duration_s`` when estimating starts.
    """

    def __init__(self, inventory: Inventory, tenants, policy="default", preemption: bool = False,
                 default_job_duration_s: float = DEFAULT_JOB_DURATION_S,
                 default_server_duration_s: float = DEFAULT_SERVER_DURATION_S):
        self.inventory = inventory
        self._ledger = Ledger(inventory, default_job_duration_s, default_server_duration_s)
        self._quotas = Quotas(self._ledger, tenants)
        policy = make_policy(policy) if isinstance(policy, str) else policy
        self._admission = Admission(self._ledger, self._quotas, policy, preemption)
        self._unavailable: frozenset = frozenset()  # nodes that take no new placement (set_unavailable)

    # ---- read access -------------------------------------------------------------------------------
    @property
    def pending(self):
        """Pending workloads by id (a read-only view)."""
        return self._ledger.pending

    @property
    def running(self):
        """Running workloads by id, as :class:`Running` (a read-only view)."""
        return self._ledger.running

    @property
    def state(self) -> ClusterState:
        """The free capacity of the pool (replaced by :meth:`restore`)."""
        return self._ledger.state

    @property
    def capacity(self) -> Resources:
        return self._ledger.capacity

    @property
    def policy(self) -> PlacementPolicy:
        return self._admission.policy

    @property
    def preemption(self) -> bool:
        return self._admission.preemption

    @property
    def tenants(self) -> dict[str, Tenant]:
        return self._quotas.tenants

    @property
    def default_job_duration_s(self) -> float:
        return self._ledger.default_job_s

    @property
    def default_server_duration_s(self) -> float:
        return self._ledger.default_server_s

    # ---- configuration -----------------------------------------------------------------------------
    def set_tenants(self, tenants) -> None:
        """Replace the tenant table (quota changes apply from the next pass; running work is kept)."""
        self._quotas.set_tenants(tenants)

    def set_unavailable(self, names) -> list[str]:
        """Give no new placement to the nodes ``names`` (their cluster says they cannot take work: down,
        unreachable, cordoned) until called without them; the workloads running there are kept (how they
        end is the executor's to say). Unknown names are ignored. Returns the nodes whose state changed."""
        names = frozenset(n for n in names if n in self.inventory.by_name)
        changed = sorted(names ^ self._unavailable)
        self._unavailable = names
        if changed:
            self._apply_availability(changed)
        return changed

    def _apply_availability(self, nodes) -> None:
        state = self.state
        for name in nodes:
            i = self.inventory.by_name[name]
            state.healthy[i] = self.inventory.nodes[i].healthy and name not in self._unavailable
            state.version[i] += 1  # cached costs of the node are stale
        self.policy.state_replaced()

    # --- accounting (issue 15 A) ---
    def hold(self, tenants) -> None:
        """Admit no new work of ``tenants`` (pending reason ``over_budget``) until called without them;
        running work is kept."""
        self._admission.held = frozenset(tenants)

    # ---- requests ----------------------------------------------------------------------------------
    def check(self, w: Workload) -> Verdict:
        """Could ``w`` ever be admitted (valid, permitted, within quota limits, fits the pool)?
        Does not place it and does not look at current usage except per-user/queue limits."""
        return self._admission.check(w)

    def submit(self, w: Workload) -> Verdict:
        """Queue ``w`` if :meth:`check` allows it; returns the verdict (nothing queued when not ok)."""
        if w.id in self._ledger.pending or w.id in self._ledger.running:
            return Verdict(False, "duplicate", f"workload {w.id!r} is already known")
        v = self._admission.check(w)
        if v.ok:
            self._ledger.queue(w)
            self.policy.observe(w.request)
        return v

    def requeue(self, w: Workload) -> Verdict:
        """Queue again a workload the caller accepted before, keeping its place (the order is by
        ``submitted_at``): the per-user server and per-tenant queue limits do not apply to it.
        A running ``w`` gives its slice back first (an admission the caller could not act on); a
        pending one stays as it is. For a workload unknown here (e.g. after a rebuild) the other
        checks still apply; the verdict says whether it is queued."""
        if w.id in self._ledger.running:
            self._ledger.stop(w.id)
            self._ledger.queue(w)
            return Verdict(True)
        if w.id in self._ledger.pending:
            return Verdict(True)
        v = self._admission.check(w, limits=False)
        if v.ok:
            self._ledger.queue(w)
            self.policy.observe(w.request)
        return v

    def cancel(self, workload_id: str) -> bool:
        """Drop a pending workload (or release a running one). False if unknown."""
        if self._ledger.unqueue(workload_id) is not None:
            return True
        return self.release(workload_id)

    def release(self, workload_id: str) -> bool:
        """Free a running workload's slice; it is reusable at once. False if unknown."""
        return self._ledger.stop(workload_id) is not None

    def restore(self, running: list) -> None:
        """Rebuild the running workloads and the state from ``[(Workload, Assignment)]`` (after a
        restart). Raises ValueError, changing nothing, if the assignments conflict or name unknown nodes."""
        self._ledger.restore(running, self._quotas.infer_borrowed)
        for w, _ in running:
            self.policy.observe(w.request)
        if self._unavailable:  # the new state is built from the inventory: the nodes known down stay down
            self._apply_availability(self._unavailable)
        self.policy.state_replaced()

    # ---- one pass ----------------------------------------------------------------------------------
    def schedule(self, now: float) -> Decision:
        """Admit what can start now; say where everything else stands. Workloads in
        ``Decision.preempt`` have already been released here."""
        decision = Decision()
        failed_shapes: set = set()
        waiting: list[tuple[Workload, str]] = []
        tally, tenants, cap = self._ledger.tally, self._quotas.tenants, self._ledger.capacity

        def share(t: str) -> float:
            return dominant_share(tally(t).group(ANY), cap, tenants.get(t))

        for w in admission_order(self._ledger.pending.values(), share):
            reason = self._admission.admit(w, now, failed_shapes, decision)
            if reason is not None:
                waiting.append((w, reason))
        decision.pending = estimate(waiting, now, self._ledger, tenants)
        return decision

    # ---- figures -----------------------------------------------------------------------------------
    def usage(self, tenant: str | None = None):
        """A snapshot :class:`TenantUsage` of one tenant, or a dict of all known tenants (configured or
        with work). Servers per user count running and pending servers."""
        if tenant is None:
            names = set(self._quotas.tenants) | self._ledger.tenants()
            return {name: self._ledger.usage(name) for name in sorted(names)}
        return self._ledger.usage(tenant)

    def free_capacity(self, request: SliceRequest) -> int:
        """How many more of ``request`` fit the pool now (ignoring quotas)."""
        return self._ledger.state.count_fits(request)

    def quota_left(self, tenant: str, resource_group: str = ANY) -> dict:
        """What ``tenant`` may still take in ``resource_group``: ``{gpu_milli, cpu_milli, memory_mib}``
        (None = unlimited) and ``borrowable_milli`` (what a job could borrow from its cohort now)."""
        return self._quotas.quota_left(tenant, resource_group)

    def consistent(self) -> bool:
        """Whether the ledger's usage sums equal a recount of its entries (a check for tests)."""
        return self._ledger.consistent()

