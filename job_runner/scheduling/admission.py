"""Admission: may a workload be queued at all (:meth:`Admission.check`), and may it start now
(:meth:`Admission.admit`: time windows, per-user/tenant limits, quotas with cohorts, allowed GPU
models, a placement; reclaim and priority preemption make room when they may)."""
from __future__ import annotations

from .ledger import Ledger
from .policies import FirstFit, PlacementPolicy
from .preemption import preempt_for, reclaim
from .quota import Quotas
from .state import ClusterState
from .tenants import ANY
from .workloads import PRIORITIES, WORKLOAD_KINDS, Decision, Verdict, Workload


class Admission:
    """The admission rules over one ledger, one quota table and one placement policy."""

    def __init__(self, ledger: Ledger, quotas: Quotas, policy: PlacementPolicy, preemption: bool):
        self.ledger = ledger
        self.quotas = quotas
        self.policy = policy
        self.preemption = preemption
        self._empty = ClusterState(ledger.inventory)
        self._fits_empty: dict = {}  # request shape -> fits an empty pool
        # --- accounting (issue 15 A): tenants whose new work is held (over budget) ---
        self.held: frozenset = frozenset()

    def check(self, w: Workload, limits: bool = True) -> Verdict:
        """Could ``w`` ever be admitted (valid, permitted, within quota limits, fits the pool)? Looks at
        current usage only for the per-user server and per-tenant queue limits (``limits=False``:
        not at all, for a workload accepted before)."""
        if w.kind not in WORKLOAD_KINDS:
            return Verdict(False, "invalid", f"kind must be one of {WORKLOAD_KINDS}")
        if w.priority not in PRIORITIES:
            return Verdict(False, "invalid", f"priority must be one of {PRIORITIES}")
        tenant = self.quotas.tenants.get(w.tenant)
        if tenant is None:
            return Verdict(False, "unknown_tenant", f"unknown tenant {w.tenant!r}")
        refusal = tenant.grant_refusal(w.priority, w.user)
        if refusal:
            return Verdict(False, "forbidden", refusal)
        charge = w.request.charge()
        cap = self.high_cap(tenant, w)
        if cap is not None and charge.gpu_milli > cap:
            return Verdict(False, "high_share",
                           f"tenant {w.tenant!r} may run at most {cap / 1000:g} GPU of high-priority work "
                           f"at once; this asks {charge.gpu_milli / 1000:g}: submit it with normal priority")
        anyq = tenant.quota(ANY)
        lend = self.quotas.borrow_ceiling(tenant) if w.kind == "job" else 0
        if anyq is not None:
            for field_, limit in (("gpu_milli", anyq.gpu_milli), ("cpu_milli", anyq.cpu_milli),
                                  ("memory_mib", anyq.memory_mib)):
                extra = lend if field_ == "gpu_milli" else 0
                if limit is not None and getattr(charge, field_) > limit + extra:
                    return Verdict(False, "over_quota",
                                   f"asks {getattr(charge, field_)} {field_}, tenant {w.tenant!r} may hold "
                                   f"at most {limit + extra}")
        restricted = self.quotas.restricted(w.request, tenant, None)
        if restricted is None:
            return Verdict(False, "over_quota", f"no GPU model group of tenant {w.tenant!r} has quota for this request")
        shape = restricted.shape()
        fits = self._fits_empty.get(shape)
        if fits is None:
            fits = self._fits_empty[shape] = FirstFit().place(self._empty, restricted) is not None
        if not fits:
            return Verdict(False, "never_fits", "no node of the pool can ever hold this request")
        if limits and anyq is not None:
            held = self.ledger.tally(w.tenant)
            if w.kind == "server" and anyq.max_servers_per_user is not None:
                if held.servers(w.user) >= anyq.max_servers_per_user:
                    # the same words as the hub's home page and spawn form (aistack_hub.admin.hubside)
                    return Verdict(False, "server_limit",
                                   f"user {w.user!r} already has {held.servers(w.user)} of the "
                                   f"{anyq.max_servers_per_user} server(s) tenant {w.tenant!r} allows each user: "
                                   f"stop one (on the Hub home page) before starting another")
            if w.kind == "job" and anyq.max_queued_jobs is not None and held.queued_jobs >= anyq.max_queued_jobs:
                return Verdict(False, "queue_full", f"tenant {w.tenant!r} already has {anyq.max_queued_jobs} queued jobs")
        return Verdict(True)

    def admit(self, w: Workload, now: float, failed_shapes: set, decision: Decision) -> str | None:
        """Start ``w`` now (returns None; recorded in the ledger and ``decision``) or say why it waits.
        ``failed_shapes``: request shapes that found no placement in this pass (they will not fit later
        in it either, unless something was preempted)."""
        tenant = self.quotas.tenants.get(w.tenant)
        if tenant is None:
            return "unknown_tenant"
        if tenant.windows and not any(win.contains(now) for win in tenant.windows):
            return "window"
        if w.tenant in self.held:  # accounting (issue 15 A): over budget with a hold
            return "over_budget"
        held = self.ledger.tally(w.tenant)
        anyq = tenant.quota(ANY)
        if anyq is not None:
            if w.kind == "server" and anyq.max_servers_per_user is not None:
                if held.servers_running.get(w.user, 0) >= anyq.max_servers_per_user:
                    return "server_limit"
            if w.kind == "job" and anyq.max_running_jobs is not None and held.running_jobs >= anyq.max_running_jobs:
                return "running_jobs"
        charge = w.request.charge()
        cap = self.high_cap(tenant, w)
        if cap is not None and self.high_held(w.tenant) + charge.gpu_milli > cap:
            return "high_share"
        fit = self.quotas.fits(tenant, w, charge)
        if fit is None:
            return "quota"
        borrowed_milli, must_reclaim = fit
        req = self.quotas.restricted(w.request, tenant, held)
        if req is None:
            return "quota"
        victims: list[str] = []
        if must_reclaim:
            # the owner asks for quota it lent: borrowed jobs of its cohort give it back first, so the
            # cohort never holds more than the sum of its members' quotas
            chosen = reclaim(self.quotas, tenant, charge)
            if chosen is None:
                return "quota"
            victims = self._stop(chosen)
            failed_shapes.clear()
        placement = None
        shape = req.shape()
        if shape not in failed_shapes:
            placement = self.policy.place(self.ledger.state, req)
        if placement is None and self.preemption and w.priority == "emergency":
            got = preempt_for(self.ledger, w, req, self.policy)
            if got is not None:
                chosen, placement = got
                victims += self._stop(chosen)
        decision.preempt.extend(victims)
        if placement is None:
            failed_shapes.add(shape)
            return "capacity"
        a = self.ledger.start(w, req, placement, now, borrowed_milli)
        decision.admitted.append((w, a))
        if victims:
            failed_shapes.clear()
        return None

    def high_cap(self, tenant, w: Workload) -> int | None:
        """The GPU milli ``tenant``'s running ``high`` work may hold at once (None: no cap, or ``w`` is
        not ``high``). Emergency work is not capped: few hold that grant, and it exists to jump queues."""
        if w.priority != "high" or tenant.max_high_share is None:
            return None
        return int(tenant.max_high_share * self.ledger.capacity.gpu_milli)

    def high_held(self, tenant: str) -> int:
        """GPU milli held by ``tenant``'s running ``high`` workloads. A walk over the running entries:
        asked only for ``high`` work of a capped tenant, so the common path stays O(1)."""
        return sum(r.charge.gpu_milli for r in self.ledger.running.values()
                   if r.workload.tenant == tenant and r.workload.priority == "high")

    def _stop(self, victims) -> list[str]:
        for r in victims:
            self.ledger.stop(r.workload.id)
        return [r.workload.id for r in victims]
