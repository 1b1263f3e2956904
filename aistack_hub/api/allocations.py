"""Server slices for the hub's spawner: POST/GET/DELETE allocations (the hub's token, or an admin)."""
from __future__ import annotations

import asyncio
import datetime
import math

from sqlalchemy import update

from job_runner.db import ALLOC_ALLOCATED, ALLOC_PENDING, ALLOC_RELEASED, Allocation, utcnow
from job_runner.db.ops import iso
from job_runner.scheduling import PRIORITIES, Workload

from .base import APIError, APIHandler
from .jobs import VERDICT_STATUS

MAX_WAIT_S = 30.0


def profile_json(p) -> dict:
    r = p.request
    return {"slug": p.slug, "display_name": p.display_name,
            "request": {"kind": r.kind, "gpus": r.gpus, "gpu_milli": r.gpu_milli, "gpu_mem_mib": r.gpu_mem_mib,
                        "mig_profile": r.mig_profile, "cpu_milli": r.cpu_milli, "memory_mib": r.memory_mib,
                        "gpu_models": list(r.gpu_models), "sharing": r.sharing},
            "image": p.image, "extra": dict(p.extra or {})}


def alloc_json(row: Allocation, ctx) -> dict:
    out = {"id": row.id, "user": row.user, "tenant": row.tenant, "server_name": row.server_name,
           "state": row.state, "assignment": row.assignment, "env": row.env or {},
           "created_at": iso(row.created_at), "allocated_at": iso(row.allocated_at),
           "released_at": iso(row.released_at), "position": None, "estimated_start": None, "reason": None}
    info = ctx.queue.alloc_pending_info(row.id) if row.state == ALLOC_PENDING else None
    if info is not None:
        out["position"], out["reason"] = info.position, info.reason
        if info.estimated_start is not None and math.isfinite(info.estimated_start):
            out["estimated_start"] = iso(datetime.datetime.utcfromtimestamp(info.estimated_start))
    t = ctx.tenant(row.tenant)
    out["idle_timeout_s"] = t.idle_timeout_s if t is not None else None
    try:
        out["profile"] = profile_json(ctx.deployment.profiles.get(row.profile))
    except KeyError:
        out["profile"] = {"slug": row.profile}
    return out


class AllocationsHandler(APIHandler):
    async def post(self):
        self.require_admin()
        body = self.json_body()
        unknown = set(body) - {"user", "tenant", "profile", "server_name", "wait", "priority"}
        if unknown:
            raise APIError(400, "bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
        user, tenant, slug = body.get("user"), body.get("tenant"), body.get("profile")
        server_name = body.get("server_name") or ""
        for key, v in (("user", user), ("tenant", tenant), ("profile", slug)):
            if not isinstance(v, str) or not v or len(v) > 255:
                raise APIError(400, "bad_request", f"'{key}' (a non-empty string) is required")
        if not isinstance(server_name, str) or len(server_name) > 255:
            raise APIError(400, "bad_request", "'server_name' must be a string")
        wait = body.get("wait", False)
        if isinstance(wait, bool):
            # true: queue it and answer after the scheduler's next decision (allocated or pending);
            # a number: also hold the answer up to that many seconds (at most MAX_WAIT_S) while it is pending.
            wait_s, queue_it = 0.0, wait
        elif isinstance(wait, (int, float)) and 0 <= wait <= 3600:
            wait_s, queue_it = min(float(wait), MAX_WAIT_S), True
        else:
            raise APIError(400, "bad_request", "'wait' must be a boolean or seconds")
        priority = body.get("priority", "normal")
        if priority not in PRIORITIES:
            raise APIError(400, "bad_request", f"'priority' must be one of {', '.join(PRIORITIES)}")
        if self.ctx.tenant(tenant) is None:
            raise APIError(400, "unknown_tenant", f"no tenant {tenant!r}")
        profile = self.ctx.offered_profile(slug, tenant)
        verdict = self.ctx.queue.check(Workload("alloc-new", tenant, user, "server", priority, profile.request, 0.0))
        if not verdict.ok:
            raise APIError(VERDICT_STATUS.get(verdict.reason, 403), verdict.reason, verdict.message)
        now = utcnow()
        with self.ctx.db.session() as s:
            row = Allocation(user=user, tenant=tenant, profile=slug, server_name=server_name, priority=priority,
                             state=ALLOC_PENDING, request=profile.request.to_dict(), created_at=now)
            s.add(row)
            s.flush()
            alloc_id = row.id
        await self._wait_decision(alloc_id, max(wait_s, 0.0))
        with self.ctx.db.session() as s:
            row = s.get(Allocation, alloc_id)
            out = alloc_json(row, self.ctx)
            if row.state == ALLOC_PENDING and not queue_it:
                s.execute(update(Allocation).where(Allocation.id == alloc_id, Allocation.state == ALLOC_PENDING)
                          .values(state=ALLOC_RELEASED, released_at=utcnow()))
                s.commit()
                self.ctx.queue.wake()
                if out.get("reason") in ("quota", "server_limit"):
                    raise APIError(403, "over_quota", f"tenant {tenant!r} has no quota left for {slug!r} now "
                                   f"(its running servers and jobs use it)")
                raise APIError(409, "no_capacity", f"no free slice for {slug!r} now ({out.get('reason') or 'busy'})")
        self.write_json(out, 201)

    async def _wait_decision(self, alloc_id: int, wait_s: float):
        """Wait for the scheduling loop's next pass (and then until allocated, up to wait_s)."""
        queue = self.ctx.queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 5.0 if wait_s == 0 else wait_s)
        first_tick = queue.ticks
        while loop.time() < deadline:
            queue.wake()
            fut = loop.create_future()
            queue.alloc_waiters.setdefault(alloc_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, timeout=min(0.5, max(0.01, deadline - loop.time())))
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = queue.alloc_waiters.get(alloc_id, [])
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    queue.alloc_waiters.pop(alloc_id, None)
            with self.ctx.db.read() as s:
                state = s.query(Allocation.state).filter(Allocation.id == alloc_id).scalar()
            if state != ALLOC_PENDING:
                return
            if wait_s == 0 and queue.ticks >= first_tick + 2:
                return  # a full pass has seen it and left it pending

    async def get(self):
        self.require_admin()
        with self.ctx.db.read() as s:
            q = s.query(Allocation).filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)))
            out = [alloc_json(r, self.ctx) for r in q.order_by(Allocation.id)]
        self.write_json({"allocations": out})


class AllocationHandler(APIHandler):
    def _row(self, s, alloc_id):
        try:
            n = int(alloc_id)
            row = s.get(Allocation, n) if 0 < n < 2**62 else None
        except ValueError:
            row = None
        if row is None:
            raise APIError(404, "not_found", f"no allocation {alloc_id!r}")
        return row

    async def get(self, alloc_id):
        self.require_admin()
        with self.ctx.db.read() as s:
            self.write_json(alloc_json(self._row(s, alloc_id), self.ctx))

    async def delete(self, alloc_id):
        self.require_admin()
        with self.ctx.db.session() as s:
            row = self._row(s, alloc_id)
            s.execute(update(Allocation).where(Allocation.id == row.id, Allocation.state != ALLOC_RELEASED)
                      .values(state=ALLOC_RELEASED, released_at=utcnow()))
            s.flush()
            s.refresh(row)
            out = alloc_json(row, self.ctx)
        self.ctx.queue.wake()
        self.write_json(out)
