"""Admission: which pending workloads start now, where, and who waits how long.

Order of one :meth:`Scheduler.schedule` pass:
1. priority classes, highest first (emergency > high > normal);
2. within a class, weighted dominant-resource fair share between tenants: the tenant whose
   (largest share of cluster GPU/CPU/memory it holds) / weight is least goes next (re-evaluated after
   every admission, like DRF);
3. FIFO within a tenant (a workload that cannot start does not block smaller ones behind it);
4. a workload starts only if its tenant's quotas hold afterwards (in every resource group it touches)
   and a placement exists; jobs may borrow idle quota of their cohort, and an owner that needs its
   quota back reclaims it by preempting borrowed jobs; with ``preemption=True`` an emergency
   workload that does not fit preempts lower-priority jobs (never servers).
"""
from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict

import numpy as np

from .assignment import Assignment
from .inventory import Inventory
from .policies import FirstFit, PlacementPolicy, make_policy
from .slices import Resources, SliceRequest
from .state import ClusterState
from .tenants import ANY, Tenant, next_window_start
from .workloads import (PRIORITIES, WORKLOAD_KINDS, Decision, Pending, Running, TenantUsage,
                        Verdict, Workload)

DEFAULT_JOB_DURATION_S = 3600.0
DEFAULT_SERVER_DURATION_S = 8 * 3600.0


class Scheduler:
    """The one scheduler of the pool. Pure: no I/O, no clock (``now`` is passed in).

    ``tenants``: list or dict of :class:`Tenant`. ``policy``: a name from
    :data:`~.policies.POLICIES` or a :class:`PlacementPolicy`. ``preemption``: let emergency
    workloads preempt lower-priority jobs.
    """

    def __init__(self, inventory: Inventory, tenants, policy="default", preemption: bool = False,
                 default_job_duration_s: float = DEFAULT_JOB_DURATION_S,
                 default_server_duration_s: float = DEFAULT_SERVER_DURATION_S):
        self.inventory = inventory
        self.state = ClusterState(inventory)
        self._empty = ClusterState(inventory)
        self.policy: PlacementPolicy = make_policy(policy) if isinstance(policy, str) else policy
        self.preemption = preemption
        self.default_job_duration_s = default_job_duration_s
        self.default_server_duration_s = default_server_duration_s
        self.tenants: dict[str, Tenant] = {}
        self.set_tenants(tenants)
        self._servers: Counter = Counter()
        self._queued: Counter = Counter()
        self._pending_n: Counter = Counter()
        # what running workloads hold, per tenant; changed with every admission/release/eviction
        self._live: dict[str, TenantUsage] = defaultdict(TenantUsage)
        self.pending: dict[str, Workload] = _PendingTable(self._count_pending)
        self.running: dict[str, Running] = {}
        self._fits_empty: dict = {}
        self.capacity = Resources(
            int(self.state.gpu_exists.sum()) * 1000, int(self.state.cpu_cap.sum()), int(self.state.mem_cap.sum()))

    # ---- configuration ---------------------------------------------------------------------------
    def set_tenants(self, tenants) -> None:
        """Replace the tenant table (quota changes apply from the next pass; running work is kept)."""
        items = tenants.values() if isinstance(tenants, dict) else tenants
        self.tenants = {t.name: t for t in items}

    # ---- requests --------------------------------------------------------------------------------
    def check(self, w: Workload) -> Verdict:
        """Could ``w`` ever be admitted (valid, permitted, within quota limits, fits the pool)?
        Does not place it and does not look at current usage except per-user/queue limits."""
        if w.kind not in WORKLOAD_KINDS:
            return Verdict(False, "invalid", f"kind must be one of {WORKLOAD_KINDS}")
        if w.priority not in PRIORITIES:
            return Verdict(False, "invalid", f"priority must be one of {PRIORITIES}")
        tenant = self.tenants.get(w.tenant)
        if tenant is None:
            return Verdict(False, "unknown_tenant", f"unknown tenant {w.tenant!r}")
        if w.priority == "emergency" and w.user not in tenant.emergency_users:
            return Verdict(False, "forbidden", f"user {w.user!r} may not use emergency priority in {w.tenant!r}")
        charge = w.request.charge()
        anyq = tenant.quota(ANY)
        lend = self._borrow_ceiling(tenant) if w.kind == "job" else 0
        if anyq is not None:
            for field_, limit in (("gpu_milli", anyq.gpu_milli), ("cpu_milli", anyq.cpu_milli),
                                  ("memory_mib", anyq.memory_mib)):
                extra = lend if field_ == "gpu_milli" else 0
                if limit is not None and getattr(charge, field_) > limit + extra:
                    return Verdict(False, "over_quota",
                                   f"asks {getattr(charge, field_)} {field_}, tenant {w.tenant!r} may hold "
                                   f"at most {limit + extra}")
        if not self._models_within_quota(tenant, w.request, usage=None):
            return Verdict(False, "over_quota", f"no GPU model group of tenant {w.tenant!r} has quota for this request")
        restricted = self._restricted(w.request, tenant, None)
        fits = self._fits_empty.get(restricted.shape())
        if fits is None:
            fits = self._fits_empty[restricted.shape()] = FirstFit().place(self._empty, restricted) is not None
        if not fits:
            return Verdict(False, "never_fits", "no node of the pool can ever hold this request")
        if w.kind == "server" and anyq and anyq.max_servers_per_user is not None:
            if self._servers[(w.tenant, w.user)] >= anyq.max_servers_per_user:
                return Verdict(False, "server_limit",
                               f"user {w.user!r} already has {anyq.max_servers_per_user} server(s)")
        if w.kind == "job" and anyq and anyq.max_queued_jobs is not None:
            if self._queued[w.tenant] >= anyq.max_queued_jobs:
                return Verdict(False, "queue_full", f"tenant {w.tenant!r} already has {anyq.max_queued_jobs} queued jobs")
        return Verdict(True)

    def submit(self, w: Workload) -> Verdict:
        """Queue ``w`` if :meth:`check` allows it; returns the verdict (nothing queued when not ok)."""
        if w.id in self.pending or w.id in self.running:
            return Verdict(False, "duplicate", f"workload {w.id!r} is already known")
        v = self.check(w)
        if v.ok:
            self.pending[w.id] = w
            self.policy.observe(w.request)
        return v

    def _count(self, w: Workload, sign: int, pending: bool) -> None:
        """Keep the per-tenant queued-job and per-user server counters (servers: pending + running)."""
        if w.kind == "server":
            self._servers[(w.tenant, w.user)] += sign
        elif pending:
            self._queued[w.tenant] += sign

    def _count_pending(self, w: Workload, sign: int) -> None:
        self._count(w, sign, pending=True)
        self._pending_n[w.tenant] += sign

    def _recount(self) -> None:
        self._servers.clear()
        self._queued.clear()
        self._pending_n.clear()
        self._live = defaultdict(TenantUsage)
        for r in self.running.values():
            self._add_usage(self._live[r.workload.tenant], r, +1)
        for w in self.pending.values():
            self._pending_n[w.tenant] += 1
            self._count(w, +1, pending=True)
        for r in self.running.values():
            self._count(r.workload, +1, pending=False)

    def cancel(self, workload_id: str) -> bool:
        """Drop a pending workload (or release a running one). False if unknown."""
        if self.pending.pop(workload_id, None) is not None:
            return True
        return self.release(workload_id)

    def release(self, workload_id: str) -> bool:
        """Free a running workload's slice; it is reusable at once. False if unknown."""
        r = self.running.pop(workload_id, None)
        if r is None:
            return False
        self.state.free(r.workload.request, r.assignment)
        self._count(r.workload, -1, pending=False)
        self._add_usage(self._live[r.workload.tenant], r, -1)
        return True

    def restore(self, running: list) -> None:
        """Rebuild the state from ``[(Workload, Assignment)]`` (after a restart). Raises ValueError,
        changing nothing, if the assignments conflict or name unknown nodes."""
        state = ClusterState(self.inventory)
        entries = {}
        for w, a in running:
            if isinstance(a, dict):
                a = Assignment.from_dict(a)
            try:
                state.take(w.request, a)
            except (ValueError, KeyError, IndexError) as e:
                raise ValueError(f"cannot restore {w.id!r} at {a.to_dict()}: {e}") from None
            entries[w.id] = Running(w, a, w.submitted_at, self._group_of(a))
        self.state = state
        self.running = entries
        for w, _ in running:
            self.pending.pop(w.id, None)
            self.policy.observe(w.request)
        self._mark_borrowed_after_restore()
        self._recount()
        self.policy.state_replaced()

    # ---- one pass ----------------------------------------------------------------------------------
    def schedule(self, now: float) -> Decision:
        """Admit what can start now; say where everything else stands."""
        decision = Decision()
        usage = self._usage_table()
        failed_shapes: set = set()
        by_class: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for w in sorted(self.pending.values(), key=lambda w: (w.submitted_at, w.id)):
            by_class[w.rank][w.tenant].append(w)
        order: list[tuple[Workload, str]] = []  # pending in admission order with the reason it waits
        for rank in sorted(by_class, reverse=True):
            queues = by_class[rank]
            heap = [(self._share(usage[t], self.tenants.get(t)), t) for t in queues]
            heapq.heapify(heap)
            cursor = dict.fromkeys(queues, 0)
            while heap:
                _, t = heapq.heappop(heap)
                q = queues[t]
                w = q[cursor[t]]
                cursor[t] += 1
                reason = self._try_admit(w, now, usage, failed_shapes, decision)
                if reason is not None:
                    order.append((w, reason))
                if cursor[t] < len(q):
                    heapq.heappush(heap, (self._share(usage[t], self.tenants.get(t)), t))
        for w, a in decision.admitted:
            self.pending.pop(w.id, None)
            if w.kind == "server":
                self._servers[(w.tenant, w.user)] += 1  # pending server -> running server
        decision.pending = self._estimate(order, now)
        return decision

    def _try_admit(self, w: Workload, now: float, usage, failed_shapes, decision) -> str | None:
        """Admit ``w`` (returns None) or say why it waits."""
        tenant = self.tenants.get(w.tenant)
        if tenant is None:
            return "unknown_tenant"
        if tenant.windows and not any(win.contains(now) for win in tenant.windows):
            return "window"
        u = usage[w.tenant]
        anyq = tenant.quota(ANY)
        if w.kind == "server" and anyq and anyq.max_servers_per_user is not None:
            if u.servers_by_user.get(w.user, 0) >= anyq.max_servers_per_user:
                return "server_limit"
        if w.kind == "job" and anyq and anyq.max_running_jobs is not None and u.running_jobs >= anyq.max_running_jobs:
            return "running_jobs"
        charge = w.request.charge()
        fit = self._fits_quota(tenant, w, charge, usage)
        if fit is None:
            return "quota"
        borrowed_milli, reclaim = fit
        req = self._restricted(w.request, tenant, u)
        if req is None:
            return "quota"
        victims: list[str] = []
        if reclaim:
            # the owner asks for quota it lent: borrowed jobs of its cohort give it back first, so the
            # cohort never holds more than the sum of its members' quotas
            got = self._reclaim(tenant, charge, usage)
            if got is None:
                return "quota"
            victims = got
            failed_shapes.clear()
        placement = None
        shape = req.shape()  # a shape that did not fit will not fit later in this pass
        if shape not in failed_shapes:
            placement = self.policy.place(self.state, req)
        if placement is None and self.preemption and w.priority == "emergency":
            got = self._preempt_for(w, req, usage)
            if got is not None:
                more, placement = got
                victims += more
        decision.preempt.extend(victims)
        if placement is None:
            failed_shapes.add(shape)
            return "capacity"
        a = self.state.allocate(req, placement)
        r = Running(w, a, now, self._group_of(a), borrowed_milli)
        self.running[w.id] = r
        self._add_usage(usage[w.tenant], r, +1)
        decision.admitted.append((w, a))
        if victims:
            failed_shapes.clear()
        return None

    # ---- quota ---------------------------------------------------------------------------------------
    def _cohort(self, tenant: Tenant) -> list[Tenant]:
        if tenant.cohort is None:
            return [tenant]
        return [t for t in self.tenants.values() if t.cohort == tenant.cohort]

    def _borrow_ceiling(self, tenant: Tenant) -> int:
        """The most GPU milli ``tenant`` could ever borrow from its cohort."""
        if tenant.cohort is None:
            return 0
        others = sum((t.quota(ANY).gpu_milli or 0) for t in self._cohort(tenant)
                     if t.name != tenant.name and t.quota(ANY) is not None)
        if tenant.borrowing_limit_milli is not None:
            others = min(others, tenant.borrowing_limit_milli)
        return others

    def _fits_quota(self, tenant: Tenant, w: Workload, charge: Resources, usage):
        """None if the quota of the "any" group forbids ``w`` now, else (GPU milli it borrows, needs_reclaim)."""
        u = usage[tenant.name].group(ANY)
        q = tenant.quota(ANY)
        if q is None:
            return 0, False
        if q.cpu_milli is not None and u.cpu_milli + charge.cpu_milli > q.cpu_milli:
            return None
        if q.memory_mib is not None and u.memory_mib + charge.memory_mib > q.memory_mib:
            return None
        if q.gpu_milli is None:
            return 0, False
        after = u.gpu_milli + charge.gpu_milli
        if tenant.cohort is None:
            return (0, False) if after <= q.gpu_milli else None
        members = self._cohort(tenant)
        nominal_total = sum((m.quota(ANY).gpu_milli or 0) for m in members if m.quota(ANY))
        used_total = sum(usage[m.name].group(ANY).gpu_milli for m in members)
        if after <= q.gpu_milli:
            # within its own quota: it may have to reclaim what it lent
            return 0, used_total + charge.gpu_milli > nominal_total
        if w.kind != "job":
            return None  # servers never borrow: they cannot be reclaimed
        borrowed_now = usage[tenant.name].borrowed_milli
        limit = tenant.borrowing_limit_milli
        extra = after - max(q.gpu_milli, u.gpu_milli)  # the part of this job beyond its own quota
        if limit is not None and borrowed_now + extra > limit:
            return None
        if used_total + charge.gpu_milli > nominal_total:
            return None  # nothing idle to borrow
        return extra, False

    def _models_within_quota(self, tenant: Tenant, req: SliceRequest, usage) -> bool:
        return self._allowed_models(tenant, req, usage) != ()

    def _allowed_models(self, tenant: Tenant, req: SliceRequest, usage):
        """GPU models the request may land on given per-model quotas (None = no restriction)."""
        if req.kind == "cpu":
            return None
        model_quotas = {g: q for g, q in tenant.quotas.items() if g != ANY}
        if not model_quotas:
            return None
        names = req.gpu_models or tuple(self.state.model_names)
        charge = req.charge()
        ok = []
        for m in names:
            q = model_quotas.get(m)
            if q is None:
                ok.append(m)  # no quota for this model group: only "any" limits it
                continue
            used = usage.group(m) if usage is not None else Resources()
            if q.gpu_milli is None or used.gpu_milli + charge.gpu_milli <= q.gpu_milli:
                ok.append(m)
        return tuple(ok)

    def _restricted(self, req: SliceRequest, tenant: Tenant, usage) -> SliceRequest | None:
        models = self._allowed_models(tenant, req, usage)
        if models is None:
            return req
        if not models:
            return None
        if tuple(models) == tuple(req.gpu_models):
            return req
        d = req.to_dict()
        d["gpu_models"] = tuple(models)
        return SliceRequest.from_dict(d)

    def _reclaim(self, tenant: Tenant, charge: Resources, usage) -> list[str] | None:
        """Preempt borrowed jobs of other cohort members until ``charge`` fits the cohort's quota."""
        members = self._cohort(tenant)
        nominal_total = sum((m.quota(ANY).gpu_milli or 0) for m in members if m.quota(ANY))
        used_total = sum(usage[m.name].group(ANY).gpu_milli for m in members)
        need = used_total + charge.gpu_milli - nominal_total
        names = {m.name for m in members if m.name != tenant.name}
        victims = sorted((r for r in self.running.values() if r.borrowed and r.workload.tenant in names),
                         key=lambda r: (-r.started_at, r.workload.id))
        chosen = []
        for r in victims:
            if need <= 0:
                break
            chosen.append(r)
            need -= r.charge.gpu_milli
        if need > 0:
            return None
        for r in chosen:
            self._evict(r, usage)
        return [r.workload.id for r in chosen]

    def _preempt_for(self, w: Workload, req: SliceRequest, usage):
        """Find lower-priority jobs whose removal lets ``req`` fit; evict them. None if impossible."""
        victims = sorted((r for r in self.running.values()
                          if r.workload.kind == "job" and r.workload.rank < w.rank),
                         key=lambda r: (r.workload.rank, -r.started_at, r.workload.id))
        if not victims:
            return None
        trial = self.state.copy()
        released = []
        placement = None
        for r in victims:
            trial.free(r.workload.request, r.assignment)
            released.append(r)
            # first-fit on the trial copy: fragmentation caches belong to the live state
            placement = FirstFit().place(trial, req)
            if placement is not None:
                break
        if placement is None:
            return None
        # keep only the victims on the chosen node, in order, until it fits
        node = self.inventory.nodes[placement.node].name
        needed = []
        trial = self.state.copy()
        for r in released:
            if r.assignment.node != node:
                continue
            trial.free(r.workload.request, r.assignment)
            needed.append(r)
            placement = _place_on(trial, req, placement.node, self.policy)
            if placement is not None:
                break
        if placement is None:
            return None
        for r in needed:
            self._evict(r, usage)
        return [r.workload.id for r in needed], placement

    def _evict(self, r: Running, usage) -> None:
        self.running.pop(r.workload.id, None)
        self.state.free(r.workload.request, r.assignment)
        self._count(r.workload, -1, pending=False)
        self._add_usage(usage[r.workload.tenant], r, -1)

    # ---- usage ---------------------------------------------------------------------------------------
    def _group_of(self, a: Assignment) -> str:
        if not a.gpu_indices:
            return ANY
        i = self.inventory.by_name[a.node]
        return self.inventory.nodes[i].gpus[a.gpu_indices[0]].model

    @staticmethod
    def _add_usage(u: TenantUsage, r: Running, sign: int) -> None:
        c = r.charge
        delta = Resources(sign * c.gpu_milli, sign * c.cpu_milli, sign * c.memory_mib)
        u.by_group[ANY] = u.group(ANY) + delta
        if r.group != ANY:
            u.by_group[r.group] = u.group(r.group) + delta
        u.borrowed_milli += sign * r.borrowed_milli
        if r.workload.kind == "server":
            u.servers_by_user[r.workload.user] = u.servers_by_user.get(r.workload.user, 0) + sign
        else:
            u.running_jobs += sign

    def _usage_table(self) -> dict[str, TenantUsage]:
        """The live table of what running workloads hold (admission changes it as it admits)."""
        return self._live

    def usage(self, tenant: str | None = None):
        """A snapshot :class:`TenantUsage` of one tenant, or a dict of all known tenants. Servers per
        user count running and pending servers."""
        if tenant is None:
            names = set(self.tenants) | set(self._live) | {t for t, n in self._pending_n.items() if n}
            return {name: self.usage(name) for name in sorted(names)}
        live = self._live.get(tenant) or TenantUsage()
        servers = {u: n for (t, u), n in self._servers.items() if t == tenant and n}
        return TenantUsage(dict(live.by_group), live.borrowed_milli, servers, live.running_jobs,
                           self._queued[tenant], self._pending_n[tenant])

    def _mark_borrowed_after_restore(self) -> None:
        """After a restart, jobs holding a tenant above its own GPU quota are the borrowed ones
        (youngest first)."""
        per: dict[str, list[Running]] = defaultdict(list)
        for r in self.running.values():
            per[r.workload.tenant].append(r)
        for name, rs in per.items():
            t = self.tenants.get(name)
            q = t.quota(ANY) if t else None
            if q is None or q.gpu_milli is None:
                continue
            total = sum(r.charge.gpu_milli for r in rs)
            for r in sorted(rs, key=lambda r: (-r.started_at, r.workload.id)):
                if total <= q.gpu_milli:
                    break
                if r.workload.kind == "job":
                    r.borrowed_milli = min(r.charge.gpu_milli, total - q.gpu_milli)
                    total -= r.charge.gpu_milli

    def _share(self, u: TenantUsage, tenant: Tenant | None) -> float:
        a = u.group(ANY)
        cap = self.capacity
        dominant = max(a.gpu_milli / max(cap.gpu_milli, 1), a.cpu_milli / max(cap.cpu_milli, 1),
                       a.memory_mib / max(cap.memory_mib, 1))
        return dominant / (tenant.weight if tenant is not None else 1.0)

    def free_capacity(self, request: SliceRequest) -> int:
        """How many more of ``request`` fit the pool now (ignoring quotas)."""
        s = self.state
        ok = s.node_fits(request)
        per_node = np.full(s.n_nodes, 1 << 30, dtype=np.int64)
        if request.cpu_milli:
            per_node = np.minimum(per_node, s.cpu_free // request.cpu_milli)
        if request.memory_mib:
            per_node = np.minimum(per_node, s.mem_free // request.memory_mib)
        if request.kind == "cpu":
            if not request.cpu_milli and not request.memory_mib:
                return int(ok.sum()) * 1000
        elif request.kind == "mig":
            count = np.zeros(s.n_nodes, dtype=np.int64)
            for i in np.flatnonzero(ok):
                for g in np.flatnonzero(s.mig_gpu[i]):
                    trial_used = s.mig_used.get((int(i), int(g)), 0)
                    counts = dict(s.mig_counts.get((int(i), int(g)), {}))
                    from .models import gpu_model
                    spec = gpu_model(s.model_names[s.gpu_model[i, g]]).mig
                    if spec is None or request.mig_profile not in spec.profiles:
                        continue
                    while True:
                        starts = spec.legal_starts(trial_used, counts, request.mig_profile)
                        if not starts:
                            break
                        trial_used |= spec.profile(request.mig_profile).mask(starts[0])
                        counts[request.mig_profile] = counts.get(request.mig_profile, 0) + 1
                        count[i] += 1
            per_node = np.minimum(per_node, count)
        else:
            gpu_ok = s.gpu_fits(request)
            if request.kind == "whole":
                per_node = np.minimum(per_node, gpu_ok.sum(1) // request.gpus)
            else:
                k = np.where(gpu_ok, np.maximum(s.gpu_free, 0) // request.gpu_milli, 0)
                if request.gpu_mem_mib:
                    k = np.minimum(k, np.where(gpu_ok, s.gpu_mem_free // request.gpu_mem_mib, 0))
                per_node = np.minimum(per_node, k.sum(1))
        return int(np.where(ok, per_node, 0).sum())

    def quota_left(self, tenant: str, resource_group: str = ANY) -> dict:
        """What ``tenant`` may still take in ``resource_group``: ``{gpu_milli, cpu_milli, memory_mib}``
        (None = unlimited) and ``borrowable_milli`` (idle cohort quota it could borrow for jobs)."""
        t = self.tenants[tenant]
        q = t.quota(resource_group)
        used = self.usage(tenant).group(resource_group)
        out = {}
        for f in ("gpu_milli", "cpu_milli", "memory_mib"):
            limit = getattr(q, f) if q else None
            out[f] = None if limit is None else max(0, limit - getattr(used, f))
        borrowable = 0
        if resource_group == ANY and t.cohort is not None and q is not None and q.gpu_milli is not None:
            table = self._usage_table()
            members = self._cohort(t)
            idle = sum(max(0, (m.quota(ANY).gpu_milli or 0) - table[m.name].group(ANY).gpu_milli)
                       for m in members if m.name != tenant and m.quota(ANY))
            if t.borrowing_limit_milli is not None:
                idle = min(idle, max(0, t.borrowing_limit_milli - table[tenant].borrowed_milli))
            borrowable = idle
        out["borrowable_milli"] = borrowable
        return out

    # ---- estimates -----------------------------------------------------------------------------------
    def _expected_end(self, r: Running) -> float:
        d = r.workload.expected_duration_s
        if d is None:
            d = self.default_server_duration_s if r.workload.kind == "server" else self.default_job_duration_s
        return r.started_at + d

    def _estimate(self, order, now: float) -> list[Pending]:
        """Estimated start of each waiting workload: walk running workloads' expected ends (earliest
        first) until the GPU capacity freed covers everything queued before it and itself, in the
        cluster and in its tenant's quota; beyond the last known end, queued work is assumed to run
        in waves of the default duration. Time windows push the estimate to the next window."""
        if not order:
            return []
        ends = sorted((self._expected_end(r), r.charge.gpu_milli, r.workload.tenant) for r in self.running.values())
        end_t = np.array([max(now, e[0]) for e in ends], dtype=np.float64)
        freed = np.cumsum([e[1] for e in ends]) if ends else np.zeros(0)
        free_now = self.capacity.gpu_milli - sum(e[1] for e in ends)
        grouped: dict[str, list] = defaultdict(list)
        for e in ends:
            grouped[e[2]].append((max(now, e[0]), e[1]))
        per_tenant_ends = {name: (np.array([x[0] for x in sel]), np.cumsum([x[1] for x in sel]))
                           for name, sel in grouped.items()}
        usage = self._usage_table()
        demand = 0
        tenant_demand: Counter = Counter()
        out = []
        cap = max(self.capacity.gpu_milli, 1)

        def when(need: int, times: np.ndarray, cum: np.ndarray) -> float:
            if need <= 0:
                return now
            if len(cum) and cum[-1] >= need:
                return float(times[np.searchsorted(cum, need)])
            beyond = need - (cum[-1] if len(cum) else 0)
            last = times[-1] if len(times) else now
            return float(last + math.ceil(beyond / cap) * self.default_job_duration_s)

        for pos, (w, reason) in enumerate(order, 1):
            g = w.request.charge().gpu_milli
            demand += g
            est = when(demand - free_now, end_t, freed)
            t = self.tenants.get(w.tenant)
            q = t.quota(ANY) if t else None
            if q is not None and q.gpu_milli is not None:
                tenant_demand[w.tenant] += g
                over = usage[w.tenant].group(ANY).gpu_milli + tenant_demand[w.tenant] - q.gpu_milli
                times, cum = per_tenant_ends.get(w.tenant, (np.zeros(0), np.zeros(0)))
                if over > 0:
                    if len(cum) and cum[-1] >= over:
                        est = max(est, float(times[np.searchsorted(cum, over)]))
                    else:
                        est = max(est, (times[-1] if len(times) else now)
                                  + math.ceil(over / max(q.gpu_milli, 1)) * self.default_job_duration_s)
            if reason == "capacity" and est <= now:
                # it did not fit just now: at least one running workload must end first
                est = float(end_t[0]) if len(end_t) and end_t[0] > now else now + self.default_job_duration_s
            if t is not None and t.windows:
                nxt = next_window_start(t.windows, est)
                est = nxt if nxt is not None else est
            out.append(Pending(w, pos, est, reason))
        return out


class _PendingTable(dict):
    """The pending workloads by id; keeps the scheduler's queue/server counters right however it is
    changed (the job queue re-inserts rows it already accepted)."""

    def __init__(self, on_change):
        super().__init__()
        self._on_change = on_change

    def __setitem__(self, key, w):
        if key in self:
            self._on_change(dict.__getitem__(self, key), -1)
        super().__setitem__(key, w)
        self._on_change(w, +1)

    def __delitem__(self, key):
        self._on_change(dict.__getitem__(self, key), -1)
        super().__delitem__(key)

    def pop(self, key, *default):
        if key in self:
            self._on_change(dict.__getitem__(self, key), -1)
        return super().pop(key, *default)

    def clear(self):
        for w in list(self.values()):
            self._on_change(w, -1)
        super().clear()

    def update(self, *args, **kw):  # pragma: no cover - not used, kept consistent
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def setdefault(self, key, default=None):  # pragma: no cover - not used, kept consistent
        if key not in self:
            self[key] = default
        return self[key]

    def popitem(self):  # pragma: no cover - not used, kept consistent
        key = next(reversed(self))
        return key, self.pop(key)


def _place_on(state: ClusterState, req: SliceRequest, node: int, policy: PlacementPolicy):
    """Place ``req`` on one given node (used to confirm a preemption)."""
    node_ok, gpu_ok = state.feasible(req)
    if not node_ok[node]:
        return None
    only = np.zeros_like(node_ok)
    only[node] = True
    if req.kind == "mig":
        return policy.place_mig(state, req, np.array([node]))
    return FirstFit().choose(state, req, only, gpu_ok)
