"""Quotas with cohorts: what a tenant may still take, read against the ledger.

A tenant's quotas are hard limits per resource group ("any" and GPU models). Tenants of one cohort lend
each other idle GPU quota of the "any" group (Kueue's cohorts): a *job* may go beyond its tenant's own
GPU quota while the cohort as a whole stays within the sum of its members' quotas, by at most the
tenant's ``borrowing_limit_milli``; servers never borrow (they could not be given back). An owner that
asks for quota it lent reclaims it (see :mod:`.preemption`). The cohort totals are computed in one
place, :meth:`Quotas.cohort_gpu`.
"""
from __future__ import annotations

from collections import defaultdict

from .ledger import Ledger, Tally
from .slices import Resources, SliceRequest
from .tenants import ANY, Tenant
from .workloads import Running, Workload


def nominal_gpu(t: Tenant) -> int:
    """The tenant's own GPU quota in the "any" group as lent to its cohort (unlimited counts 0)."""
    q = t.quota(ANY)
    return (q.gpu_milli or 0) if q is not None else 0


class Quotas:
    """The tenant table and the quota arithmetic over the ledger's sums."""

    def __init__(self, ledger: Ledger, tenants):
        self.ledger = ledger
        self.tenants: dict[str, Tenant] = {}
        self.set_tenants(tenants)

    def set_tenants(self, tenants) -> None:
        items = tenants.values() if isinstance(tenants, dict) else tenants
        self.tenants = {t.name: t for t in items}
        members: dict[str, list[Tenant]] = defaultdict(list)
        for t in self.tenants.values():
            if t.cohort is not None:
                members[t.cohort].append(t)
        self._members = dict(members)
        self._nominal = {c: sum(nominal_gpu(m) for m in ms) for c, ms in members.items()}

    # ---- cohorts -------------------------------------------------------------------------------------
    def members(self, tenant: Tenant) -> list[Tenant]:
        """The tenants of ``tenant``'s cohort, itself included (just itself without a cohort)."""
        if tenant.cohort is None:
            return [tenant]
        return self._members.get(tenant.cohort, [tenant])

    def cohort_gpu(self, tenant: Tenant) -> tuple[int, int]:
        """(the sum of the members' own GPU quotas, the GPU its members hold now) of ``tenant``'s cohort."""
        if tenant.cohort in self._nominal:
            ms, nominal = self._members[tenant.cohort], self._nominal[tenant.cohort]
        else:
            ms, nominal = [tenant], nominal_gpu(tenant)
        tally = self.ledger.tally
        return nominal, sum(tally(m.name).group(ANY).gpu_milli for m in ms)

    def borrow_ceiling(self, tenant: Tenant) -> int:
        """The most GPU milli ``tenant`` could ever borrow from its cohort (whatever is in use)."""
        if tenant.cohort is None:
            return 0
        nominal, _ = self.cohort_gpu(tenant)
        others = nominal - nominal_gpu(tenant)
        if tenant.borrowing_limit_milli is not None:
            others = min(others, tenant.borrowing_limit_milli)
        return others

    # ---- admission ---------------------------------------------------------------------------------
    def fits(self, tenant: Tenant, w: Workload, charge: Resources):
        """None if the "any" quota forbids ``w`` now, else (GPU milli it borrows, whether the cohort must
        first reclaim lent quota for it)."""
        x = self.ledger.tally(tenant.name)
        u = x.group(ANY)
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
        nominal, used = self.cohort_gpu(tenant)
        if after <= q.gpu_milli:
            # within its own quota: it may have to reclaim what it lent
            return 0, used + charge.gpu_milli > nominal
        if w.kind != "job":
            return None  # servers never borrow: they cannot be reclaimed
        extra = after - max(q.gpu_milli, u.gpu_milli)  # the part of this job beyond its own quota
        limit = tenant.borrowing_limit_milli
        if limit is not None and x.borrowed_milli + extra > limit:
            return None
        if used + charge.gpu_milli > nominal:
            return None  # nothing idle to borrow
        return extra, False

    def borrowable(self, tenant: Tenant) -> int:
        """GPU milli a job of ``tenant`` could take now beyond its own remaining quota: the largest
        extra that :meth:`fits` would accept."""
        q = tenant.quota(ANY)
        if tenant.cohort is None or q is None or q.gpu_milli is None:
            return 0
        x = self.ledger.tally(tenant.name)
        own_left = max(0, q.gpu_milli - x.group(ANY).gpu_milli)
        nominal, used = self.cohort_gpu(tenant)
        room = nominal - used - own_left
        if tenant.borrowing_limit_milli is not None:
            room = min(room, tenant.borrowing_limit_milli - x.borrowed_milli)
        return max(0, room)

    def allowed_models(self, tenant: Tenant, req: SliceRequest, held: Tally | None):
        """GPU models the request may land on given per-model quotas and what ``held`` holds (None:
        nothing held); None = no restriction, () = none."""
        if req.kind == "cpu":
            return None
        model_quotas = {g: q for g, q in tenant.quotas.items() if g != ANY}
        if not model_quotas:
            return None
        names = req.gpu_models or tuple(self.ledger.inventory.models)
        charge = req.charge()
        ok = []
        for m in names:
            q = model_quotas.get(m)
            if q is None:
                ok.append(m)  # no quota for this model group: only "any" limits it
                continue
            used = held.group(m).gpu_milli if held is not None else 0
            if q.gpu_milli is None or used + charge.gpu_milli <= q.gpu_milli:
                ok.append(m)
        return tuple(ok)

    def restricted(self, req: SliceRequest, tenant: Tenant, held: Tally | None) -> SliceRequest | None:
        """``req`` narrowed to the GPU models its tenant's model quotas allow (None if none do)."""
        models = self.allowed_models(tenant, req, held)
        if models is None:
            return req
        if not models:
            return None
        if tuple(models) == tuple(req.gpu_models):
            return req
        d = req.to_dict()
        d["gpu_models"] = tuple(models)
        return SliceRequest.from_dict(d)

    # ---- figures -----------------------------------------------------------------------------------
    def quota_left(self, name: str, resource_group: str = ANY) -> dict:
        """What tenant ``name`` may still take in ``resource_group``: ``{gpu_milli, cpu_milli, memory_mib}``
        (None = unlimited) and ``borrowable_milli`` (idle cohort quota it could borrow for jobs).
        KeyError for an unknown tenant."""
        t = self.tenants[name]
        q = t.quota(resource_group)
        used = self.ledger.tally(name).group(resource_group)
        out = {}
        for f in ("gpu_milli", "cpu_milli", "memory_mib"):
            limit = getattr(q, f) if q else None
            out[f] = None if limit is None else max(0, limit - getattr(used, f))
        out["borrowable_milli"] = self.borrowable(t) if resource_group == ANY else 0
        return out

    def infer_borrowed(self, entries: list[Running]) -> dict[str, int]:
        """After a restart: the jobs holding a tenant above its own GPU quota are the borrowed ones,
        youngest first. Returns {workload id: borrowed milli}."""
        per: dict[str, list[Running]] = defaultdict(list)
        for r in entries:
            per[r.workload.tenant].append(r)
        out = {}
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
                    out[r.workload.id] = min(r.charge.gpu_milli, total - q.gpu_milli)
                    total -= r.charge.gpu_milli
        return out
