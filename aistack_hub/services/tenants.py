"""Tenants and quotas (admins write, tenant admins read their own), usage, inventory, profiles, the caller."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from job_runner.db import ACTIVE_STATES, ALLOC_ALLOCATED, ALLOC_RELEASED, QUEUED, Allocation, Job, TenantRow, utcnow
from job_runner.scheduling import Resources, SliceRequest, Tenant

from .allocations import profile_json
from .context import Identity, ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import ProfilesQuery, is_k8s_name

RESOURCES = ("gpu_milli", "cpu_milli", "memory_mib")
USAGE_DAYS = 14


def tenant_from(name: str, spec) -> Tenant:
    """The request model of PUT/PATCH tenants: the core's ``Tenant``, validated by its own parser."""
    if not isinstance(spec, dict):
        raise Invalid("the tenant must be a JSON object")
    if spec.get("name", name) != name:
        raise Invalid("the name in the body differs from the URL")
    try:
        t = Tenant.from_config(dict(spec, name=name))
        Tenant.from_config(t.to_dict())  # must survive the round trip through the database
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise Invalid(f"invalid tenant: {e}", "bad_tenant") from None
    return t


def charge(request: dict | None):
    """What a stored slice request counts against quota (the core's arithmetic)."""
    try:
        return SliceRequest.from_dict(request or {"kind": "cpu"}).charge()
    except (ValueError, TypeError):  # a row written by an older version with fields since renamed
        return Resources()


class Usage:
    """Per-tenant and per-user counts and resources in use, GPU-hours per tenant per day."""

    def __init__(self, since: dt.datetime, now: dt.datetime):
        self.since, self.now = since, now
        self.tenants = defaultdict(self.empty)
        self.users = defaultdict(lambda: defaultdict(self.empty))
        self.hours = defaultdict(float)

    @staticmethod
    def empty() -> dict:
        return {"servers": 0, "jobs_running": 0, "jobs_queued": 0, **{f: 0 for f in RESOURCES}}

    def add(self, tenant, user, key, c=None):
        for bucket in (self.tenants[tenant], self.users[user][tenant]):
            bucket[key] += 1
            for f in RESOURCES if c is not None else ():
                bucket[f] += getattr(c, f)

    def add_hours(self, tenant, start, end, gpu_milli):
        if not gpu_milli or start is None:
            return
        start, end = max(start, self.since), end or self.now
        day = start.date()
        while start < end:
            nxt = min(end, dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
            self.hours[(day.isoformat(), tenant)] += gpu_milli / 1000 * (nxt - start).total_seconds() / 3600
            start, day = nxt, day + dt.timedelta(days=1)

    def to_json(self) -> dict:
        return {"tenants": dict(self.tenants), "users": {u: dict(v) for u, v in self.users.items()},
                "gpu_hours": [{"day": d, "tenant": t, "gpu_hours": round(h, 4)}
                              for (d, t), h in sorted(self.hours.items())]}


class TenantService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def _io(self, fn, *args):
        return await self.ctx.offload.io(fn, *args)

    def _changed(self):
        """A tenant changed: the checks the API makes (grants, caps, quotas) use it from the next request
        (the read model's cached view is dropped), and the scheduling loop from its next pass."""
        read = getattr(self.ctx.controller, "read", None)
        if read is not None:
            read.invalidate()
        self.ctx.controller.wake()

    # ------------------------------------------------------------------------------- tenants
    def _list_db(self, ident: Identity) -> dict:
        mine = self.ctx.admin_tenants(ident)
        return {"tenants": [t.to_dict() for t in self.ctx.tenants() if t.name in mine]}

    async def administered(self, ident: Identity) -> dict:
        """The tenants ``ident`` administers."""
        return await self._io(self._list_db, ident)

    def _get_db(self, ident: Identity, name: str) -> dict:
        t = self.ctx.tenant(name) if len(name) <= 63 else None
        if t is None:
            raise NotFound(f"no tenant {name!r}")
        if not (ident.is_admin or ident.name in t.admins):
            raise Forbidden(f"only admins and admins of tenant {name!r} may read it")
        return t.to_dict()

    async def get(self, ident: Identity, name: str) -> dict:
        return await self._io(self._get_db, ident, name)

    def _put_db(self, t: Tenant) -> bool:
        with self.ctx.db.session() as s:
            row = s.get(TenantRow, t.name)
            if row is None:
                s.add(TenantRow(name=t.name, spec=t.to_dict(), submit_seq=0, updated_at=utcnow()))
            else:
                row.spec, row.updated_at = t.to_dict(), utcnow()
        self._changed()
        return row is None

    async def put(self, ident: Identity, name: str, spec) -> tuple[dict, bool]:
        """(the tenant, created?): create or replace."""
        self.ctx.require_admin(ident)
        if not is_k8s_name(name):
            raise Invalid("a tenant name must be a valid Kubernetes name", "bad_name")
        t = tenant_from(name, spec)
        return t.to_dict(), await self._io(self._put_db, t)

    def _patch_db(self, name: str, patch) -> dict:
        if not isinstance(patch, dict):
            raise Invalid("the tenant must be a JSON object")
        new_name = patch.get("name", name)
        if new_name != name and (not isinstance(new_name, str) or not is_k8s_name(new_name)):
            raise Invalid("a tenant name must be a valid Kubernetes name", "bad_name")
        with self.ctx.db.session() as s:
            row = s.get(TenantRow, name) if len(name) <= 63 else None
            if row is None:
                raise NotFound(f"no tenant {name!r}")
            t = tenant_from(new_name, {**row.spec, **patch})
            if new_name == name:
                row.spec, row.updated_at = t.to_dict(), utcnow()
            else:  # a rename: a new row under the new name, the old one gone, in one transaction
                if s.get(TenantRow, new_name) is not None:
                    raise Conflict(f"a tenant {new_name!r} exists already", "tenant_exists")
                self._require_idle(s, name, "renamed")
                s.delete(row)
                s.flush()
                s.add(TenantRow(name=new_name, spec=t.to_dict(), submit_seq=0, updated_at=utcnow()))
        self._changed()
        return t.to_dict()

    async def patch(self, ident: Identity, name: str, patch) -> dict:
        """Change some fields of a tenant; a different ``name`` renames it (only while it has no queued or
        running work: jobs and servers name their tenant, and the scheduler would lose track of them)."""
        self.ctx.require_admin(ident)
        return await self._io(self._patch_db, name, patch)

    @staticmethod
    def _require_idle(s, name: str, verb: str):
        jobs = s.query(Job.id).filter(Job.tenant == name, Job.state.in_(ACTIVE_STATES + (QUEUED,))).count()
        servers = s.query(Allocation.id).filter(Allocation.tenant == name,
                                                Allocation.state != ALLOC_RELEASED).count()
        if jobs or servers:
            raise Conflict(f"tenant {name!r} has {jobs} queued or running job(s) and {servers} server(s): it can be "
                           f"{verb} once they have ended (cancel the jobs, stop the servers)", "tenant_busy")

    def _delete_db(self, name: str) -> None:
        with self.ctx.db.session() as s:
            row = s.get(TenantRow, name) if len(name) <= 63 else None
            if row is None:
                raise NotFound(f"no tenant {name!r}")
            self._require_idle(s, name, "deleted")
            s.delete(row)
        self._changed()

    async def delete(self, ident: Identity, name: str) -> None:
        """Delete a tenant without queued or running work (finished jobs keep its name in their history)."""
        self.ctx.require_admin(ident)
        await self._io(self._delete_db, name)

    # ------------------------------------------------------------------------ usage, inventory
    def _usage_db(self, ident: Identity) -> dict:
        admin_of = self.ctx.admin_tenants(ident)
        now = utcnow()
        u = Usage(now - dt.timedelta(days=USAGE_DAYS), now)
        with self.ctx.db.read() as s:
            jobs = s.query(Job.tenant, Job.user, Job.state, Job.request, Job.started_at, Job.finished_at).filter(
                (Job.state.in_(ACTIVE_STATES + (QUEUED,))) | (Job.finished_at >= u.since)).all()
            allocs = s.query(Allocation.tenant, Allocation.user, Allocation.state, Allocation.request,
                             Allocation.allocated_at, Allocation.released_at).filter(
                (Allocation.state == ALLOC_ALLOCATED) | (Allocation.released_at >= u.since)).all()
        for kind, rows in (("job", jobs), ("server", allocs)):
            for tenant, user, state, request, start, end in rows:
                if not (ident.is_admin or tenant in admin_of or user == ident.name):
                    continue
                c = charge(request)
                if kind == "job" and state == QUEUED:
                    u.add(tenant, user, "jobs_queued")
                elif kind == "job" and state in ACTIVE_STATES:
                    u.add(tenant, user, "jobs_running", c)
                elif kind == "server" and state == ALLOC_ALLOCATED:
                    u.add(tenant, user, "servers", c)
                u.add_hours(tenant, start, end, c.gpu_milli)
        return u.to_json()

    async def usage(self, ident: Identity) -> dict:
        return await self._io(self._usage_db, ident)

    def _inventory_db(self, ident: Identity) -> dict:
        admin_of = self.ctx.admin_tenants(ident)
        by_gpu, used = defaultdict(list), defaultdict(int)
        with self.ctx.db.read() as s:
            rows = [("job", r.id, r.tenant, r.user, r.assignment) for r in
                    s.query(Job.id, Job.tenant, Job.user, Job.assignment).filter(Job.state.in_(ACTIVE_STATES))]
            rows += [("server", r.id, r.tenant, r.user, r.assignment) for r in
                     s.query(Allocation.id, Allocation.tenant, Allocation.user, Allocation.assignment)
                     .filter(Allocation.state == ALLOC_ALLOCATED)]
        for kind, wid, tenant, user, a in rows:
            if not a:
                continue
            # least disclosure: other tenants' workloads only for platform admins (their capacity in used_milli)
            shown = ident.is_admin or tenant in admin_of or user == ident.name
            indices = [a["mig"][0]] if a.get("mig") else list(a.get("gpu_indices") or [])
            for i in indices:
                used[(a.get("node"), int(i))] += min(1000, a.get("gpu_milli") or 1000)
                if shown:
                    by_gpu[(a.get("node"), int(i))].append({
                        "id": f"{kind}-{wid}", "kind": kind, "tenant": tenant, "user": user,
                        "gpu_milli": a.get("gpu_milli"), "mig": a.get("mig")})
        nodes = [{"name": n.name, "healthy": n.healthy, "cpu_milli": n.cpu_milli, "memory_mib": n.memory_mib,
                  "gpus": [{"index": g.index, "model": g.model, "memory_mib": g.memory_mib, "uuid": g.uuid,
                            "healthy": n.healthy, "used_milli": min(1000, used.get((n.name, g.index), 0)),
                            "workloads": by_gpu.get((n.name, g.index), [])} for g in n.gpus]}
                 for n in self.ctx.deployment.inventory.nodes]
        return {"source": self.ctx.deployment.inventory_source, "nodes": nodes}

    async def inventory(self, ident: Identity) -> dict:
        """Nodes and GPUs, how much of each is in use, and the workloads ``ident`` may see (all for a platform
        admin; a tenant admin's tenant; a member's own)."""
        return await self._io(self._inventory_db, ident)

    # -------------------------------------------------------------------------- profiles, me
    def _profiles_db(self, ident: Identity, query: ProfilesQuery) -> dict:
        ctx, tenant = self.ctx, query.tenant
        if query.user is not None and query.user != ident.name:
            if not ident.is_admin:
                raise Forbidden("only the hub and admins may ask on behalf of another user")
            if tenant is None:
                raise Invalid("with 'user', say the 'tenant'")
            if ctx.tenant(tenant) is None:
                raise Invalid(f"no tenant {tenant!r}", "unknown_tenant")
        else:
            tenant = ctx.pick_tenant(ident, tenant)
        view = ctx.controller.view()
        try:
            left = view.quota_left(tenant)
        except KeyError:
            left = {}
        left = {f: left.get(f) for f in RESOURCES}
        t = ctx.tenant(tenant)
        anyq = t.quota("any") if t is not None else None
        # the per-user server limit and what the user holds against it (running and waiting servers), so
        # the spawn form says it before Start rather than the allocation refusing after it
        servers = {"max_servers_per_user": anyq.max_servers_per_user if anyq is not None else None,
                   "servers": view.usage(tenant).servers_by_user.get(query.user or ident.name, 0)
                   if tenant in view.tenants else 0}
        out = []
        for p in ctx.deployment.profiles.for_tenant(tenant):
            c = p.request.charge()
            item = profile_json(p)
            item.update({"description": p.description, "free": view.free_capacity(p.request), "quota_left": left,
                         "fits_quota": all(left[f] is None or getattr(c, f) <= left[f] for f in RESOURCES),
                         "server_limit": servers})
            out.append(item)
        return {"tenant": tenant, "profiles": out, "server_limit": servers}

    async def profiles(self, ident: Identity, query: ProfilesQuery) -> dict:
        """Profiles a user may pick in a tenant, with free capacity and quota left."""
        return await self._io(self._profiles_db, ident, query)

    def _me_db(self, ident: Identity) -> dict:
        tenants = [{"name": t.name, "admin": ident.is_admin or ident.name in t.admins,
                    "emergency": ident.name in t.emergency_users, "high": t.may_use("high", ident.name),
                    "member": t.name in ident.groups}
                   # JupyterHub admins may charge any tenant (pick_tenant allows it); others their groups
                   for t in self.ctx.tenants() if ident.is_admin or t.name in ident.groups]
        return {"name": ident.name, "kind": ident.kind, "admin": ident.is_admin,
                "tenants": sorted(tenants, key=lambda t: (not t["member"], t["name"]))}

    async def me(self, ident: Identity) -> dict:
        """The caller, the tenants they may charge, and what they may do there."""
        return await self._io(self._me_db, ident)
