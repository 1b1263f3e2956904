"""Tenants and quotas (admins write, tenant admins read their own), usage, inventory, profiles."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from job_runner.db import (
    ACTIVE_STATES,
    ALLOC_ALLOCATED,
    QUEUED,
    Allocation,
    Job,
    TenantRow,
    utcnow,
)
from job_runner.scheduling import Tenant

from .base import APIError, APIHandler
from .allocations import profile_json


def tenant_json(t: Tenant) -> dict:
    return t.to_dict()


class TenantsHandler(APIHandler):
    async def get(self):
        from aistack_hub.config import load_tenants

        mine = self.admin_tenants()
        self.write_json({"tenants": [tenant_json(t) for t in load_tenants(self.ctx.db) if t.name in mine]})


def _validate_tenant(name: str, spec: dict) -> Tenant:
    if not isinstance(spec, dict):
        raise APIError(400, "bad_request", "the tenant must be a JSON object")
    if spec.get("name", name) != name:
        raise APIError(400, "bad_request", "the name in the body differs from the URL")
    spec = dict(spec, name=name)
    try:
        t = Tenant.from_config(spec)
        Tenant.from_config(t.to_dict())  # must survive the round trip through the database
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise APIError(400, "bad_tenant", f"invalid tenant: {e}") from None
    return t


class TenantHandler(APIHandler):
    def _row(self, s, name):
        row = s.get(TenantRow, name) if len(name) <= 63 else None
        if row is None:
            raise APIError(404, "not_found", f"no tenant {name!r}")
        return row

    async def get(self, name):
        if not (self.identity.is_admin or name in self.admin_tenants()):
            raise APIError(404 if self.ctx.tenant(name) is None else 403, "forbidden",
                           f"only admins and admins of tenant {name!r} may read it")
        with self.ctx.db.read() as s:
            self.write_json(tenant_json(Tenant.from_config(self._row(s, name).spec)))

    async def put(self, name):
        self.require_admin()
        from .jobs import K8S_NAME

        if not K8S_NAME.match(name) or len(name) > 63:
            raise APIError(400, "bad_name", "a tenant name must be a valid Kubernetes name")
        t = _validate_tenant(name, self.json_body())
        with self.ctx.db.session() as s:
            row = s.get(TenantRow, name)
            created = row is None
            if created:
                s.add(TenantRow(name=name, spec=t.to_dict(), submit_seq=0, updated_at=utcnow()))
            else:
                row.spec, row.updated_at = t.to_dict(), utcnow()
        self.ctx.queue.wake()
        self.write_json(tenant_json(t), 201 if created else 200)

    async def patch(self, name):
        self.require_admin()
        body = self.json_body()
        with self.ctx.db.session() as s:
            row = self._row(s, name)
            spec = dict(row.spec)
            spec.update(body)
            t = _validate_tenant(name, spec)
            row.spec, row.updated_at = t.to_dict(), utcnow()
        self.ctx.queue.wake()
        self.write_json(tenant_json(t))


def _charge(request: dict) -> dict:
    from job_runner.scheduling import SliceRequest

    try:
        c = SliceRequest.from_dict(request or {"kind": "cpu"}).charge()
    except (ValueError, TypeError):
        return {"gpu_milli": 0, "cpu_milli": 0, "memory_mib": 0}
    return {"gpu_milli": c.gpu_milli, "cpu_milli": c.cpu_milli, "memory_mib": c.memory_mib}


def _empty():
    return {"servers": 0, "jobs_running": 0, "jobs_queued": 0, "gpu_milli": 0, "cpu_milli": 0, "memory_mib": 0}


class UsageHandler(APIHandler):
    async def get(self):
        ident = self.identity
        admin_of = self.admin_tenants()
        tenants = defaultdict(_empty)
        users = defaultdict(lambda: defaultdict(_empty))
        hours = defaultdict(float)
        since = utcnow() - dt.timedelta(days=14)
        now = utcnow()

        def visible(tenant, user):
            return ident.is_admin or tenant in admin_of or user == ident.name

        def add(tenant, user, key, charge=None):
            for bucket in (tenants[tenant], users[user][tenant]):
                bucket[key] += 1
                if charge:
                    for f in ("gpu_milli", "cpu_milli", "memory_mib"):
                        bucket[f] += charge[f]

        def add_hours(tenant, start, end, gpu_milli):
            if not gpu_milli or start is None:
                return
            start, end = max(start, since), end or now
            day = start.date()
            while start < end:
                nxt = min(end, dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
                hours[(day.isoformat(), tenant)] += gpu_milli / 1000 * (nxt - start).total_seconds() / 3600
                start, day = nxt, day + dt.timedelta(days=1)

        with self.ctx.db.session() as s:
            jobs = s.query(Job.tenant, Job.user, Job.state, Job.request, Job.started_at, Job.finished_at).filter(
                (Job.state.in_(ACTIVE_STATES + (QUEUED,))) | (Job.finished_at >= since)).all()
            allocs = s.query(Allocation.tenant, Allocation.user, Allocation.state, Allocation.request,
                             Allocation.allocated_at, Allocation.released_at).filter(
                (Allocation.state == ALLOC_ALLOCATED) | (Allocation.released_at >= since)).all()
        for tenant, user, state, request, started, finished in jobs:
            if not visible(tenant, user):
                continue
            charge = _charge(request)
            if state == QUEUED:
                add(tenant, user, "jobs_queued")
            elif state in ACTIVE_STATES:
                add(tenant, user, "jobs_running", charge)
            add_hours(tenant, started, finished, charge["gpu_milli"])
        for tenant, user, state, request, allocated, released in allocs:
            if not visible(tenant, user):
                continue
            charge = _charge(request)
            if state == ALLOC_ALLOCATED:
                add(tenant, user, "servers", charge)
            add_hours(tenant, allocated, released, charge["gpu_milli"])
        self.write_json({
            "tenants": dict(tenants),
            "users": {u: dict(v) for u, v in users.items()},
            "gpu_hours": [{"day": d, "tenant": t, "gpu_hours": round(h, 4)} for (d, t), h in sorted(hours.items())],
        })


class InventoryHandler(APIHandler):
    async def get(self):
        ident = self.identity
        admin_of = self.admin_tenants()
        inv = self.ctx.deployment.inventory
        by_gpu = defaultdict(list)
        with self.ctx.db.read() as s:
            rows = [("job", r.id, r.tenant, r.user, r.assignment) for r in
                    s.query(Job.id, Job.tenant, Job.user, Job.assignment).filter(Job.state.in_(ACTIVE_STATES))]
            rows += [("server", r.id, r.tenant, r.user, r.assignment) for r in
                     s.query(Allocation.id, Allocation.tenant, Allocation.user, Allocation.assignment)
                     .filter(Allocation.state == ALLOC_ALLOCATED)]
        for kind, wid, tenant, user, a in rows:
            if not a:
                continue
            shown = ident.is_admin or tenant in admin_of or user == ident.name
            indices = list(a.get("gpu_indices") or [])
            if a.get("mig"):
                indices = [a["mig"][0]]
            for i in indices:
                by_gpu[(a.get("node"), int(i))].append({
                    "id": f"{kind}-{wid}", "kind": kind, "tenant": tenant, "user": user if shown else None,
                    "gpu_milli": a.get("gpu_milli"), "mig": a.get("mig")})
        nodes = []
        for n in inv.nodes:
            nodes.append({"name": n.name, "healthy": n.healthy, "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib,
                          "gpus": [{"index": g.index, "model": g.model, "memory_mib": g.memory_mib, "uuid": g.uuid,
                                    "healthy": n.healthy, "workloads": by_gpu.get((n.name, g.index), [])}
                                   for g in n.gpus]})
        self.write_json({"source": self.ctx.deployment.inventory_source, "nodes": nodes})


class ProfilesHandler(APIHandler):
    async def get(self):
        from .jobs import pick_tenant

        user = self.get_query_argument("user", None)
        tenant = self.get_query_argument("tenant", None)
        if user is not None and user != self.identity.name:
            if not self.identity.is_admin:
                raise APIError(403, "forbidden", "only the hub and admins may ask on behalf of another user")
            if tenant is None:
                raise APIError(400, "bad_request", "with 'user', say the 'tenant'")
            if self.ctx.tenant(tenant) is None:
                raise APIError(400, "unknown_tenant", f"no tenant {tenant!r}")
        else:
            tenant = pick_tenant(self, tenant)
        view = self.ctx.queue.view()
        try:
            left = view.quota_left(tenant)
        except KeyError:
            left = {"gpu_milli": None, "cpu_milli": None, "memory_mib": None}
        out = []
        for p in self.ctx.deployment.profiles.for_tenant(tenant):
            c = p.request.charge()
            fits = all(left.get(f) is None or getattr(c, f) <= left[f] for f in ("gpu_milli", "cpu_milli", "memory_mib"))
            item = profile_json(p)
            item.update({"description": p.description, "free": view.free_capacity(p.request),
                         "quota_left": {f: left.get(f) for f in ("gpu_milli", "cpu_milli", "memory_mib")},
                         "fits_quota": fits})
            out.append(item)
        self.write_json({"tenant": tenant, "profiles": out})
