"""Server slices for the hub's spawner: create (now, or queued), list, show, release."""
from __future__ import annotations

import asyncio

from sqlalchemy import update

from job_runner.db import ALLOC_ALLOCATED, ALLOC_PENDING, ALLOC_RELEASED, Allocation, utcnow
from job_runner.db.ops import iso
from job_runner.scheduling import Workload

from .context import Identity, ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound, Unavailable, refused
from .jobs import utc_iso
from .models import AllocationRequest, row_id
from .reconcile import HubUnavailable, Reconciler

MAX_WAIT_S = 30.0  # the longest a numeric ``wait`` holds the answer
DECISION_WAIT_S = 5.0  # how long ``wait: false/true`` waits for the scheduler's decision at most


def profile_json(p) -> dict:
    return {"slug": p.slug, "display_name": p.display_name, "request": p.request.to_dict(), "image": p.image,
            "extra": dict(p.extra or {})}


def alloc_json(row: Allocation, ctx: ServiceContext) -> dict:
    out = {"id": row.id, "user": row.user, "tenant": row.tenant, "server_name": row.server_name,
           "state": row.state, "assignment": row.assignment, "created_at": iso(row.created_at),
           "allocated_at": iso(row.allocated_at), "released_at": iso(row.released_at), "position": None,
           "estimated_start": None, "estimated_start_earliest": None, "estimated_start_latest": None,
           "reason": None, "release_reason": row.release_reason}
    info = ctx.controller.alloc_pending_info(row.id) if row.state == ALLOC_PENDING else None
    if info is not None:
        out.update(position=info.position, reason=info.reason, estimated_start=utc_iso(info.estimated_start),
                   estimated_start_earliest=utc_iso(info.earliest_start), estimated_start_latest=utc_iso(info.latest_start))
    try:
        out["profile"] = profile_json(ctx.deployment.profiles.get(row.profile))
    except KeyError:  # a profile removed from the config since
        out["profile"] = {"slug": row.profile}
    return out


RELEASED_LIMIT = 500  # the most rows GET allocations/released answers


class AllocationService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        # aistack_hub.service gives it the hub (HubServers) when the hub's API is known
        self.reconciler = Reconciler(ctx, None)

    def _row(self, s, alloc_id: str) -> Allocation:
        n = row_id(alloc_id)
        row = s.get(Allocation, n) if n else None
        if row is None:
            raise NotFound(f"no allocation {alloc_id!r}")
        return row

    def _insert_db(self, req: AllocationRequest) -> int:
        ctx = self.ctx
        if ctx.tenant(req.tenant) is None:
            raise Invalid(f"no tenant {req.tenant!r}", "unknown_tenant")
        profile = ctx.offered_profile(req.profile, req.tenant)
        t = ctx.tenant(req.tenant)  # priority grants as the database has them now (docs/admin.md)
        if t is not None and t.grant_refusal(req.priority, req.user):
            raise Forbidden(t.grant_refusal(req.priority, req.user))
        verdict = ctx.controller.check(Workload("alloc-new", req.tenant, req.user, "server", req.priority,
                                                profile.request, 0.0))
        if not verdict.ok:
            raise refused(verdict)
        with ctx.db.session() as s:
            row = Allocation(user=req.user, tenant=req.tenant, profile=req.profile, server_name=req.server_name or "",
                             priority=req.priority, state=ALLOC_PENDING, request=profile.request.to_dict(),
                             created_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def _decided_db(self, alloc_id: int, keep_pending: bool) -> dict:
        with self.ctx.db.session() as s:
            row = s.get(Allocation, alloc_id)
            out = alloc_json(row, self.ctx)
            if row.state != ALLOC_PENDING or keep_pending:
                return out
            s.execute(update(Allocation).where(Allocation.id == alloc_id, Allocation.state == ALLOC_PENDING)
                      .values(state=ALLOC_RELEASED, released_at=utcnow()))
        self.ctx.controller.wake()
        if out["reason"] == "server_limit":  # said as the hub's home page and spawn form say it
            raise Forbidden(f"user {row.user!r} already has as many servers as tenant {row.tenant!r} allows each "
                            f"user: stop one (on the Hub home page) before starting another", "over_quota")
        if out["reason"] == "over_budget":  # accounting (issue 15 A)
            raise Forbidden(f"tenant {row.tenant!r} is over its budget this month: new servers wait until an "
                            f"admin raises it", "over_budget")
        if out["reason"] == "quota":
            raise Forbidden(f"tenant {row.tenant!r} has no quota left for {row.profile!r} now (its running "
                            f"servers and jobs use it)", "over_quota")
        raise Conflict(f"no free slice for {row.profile!r} now ({out['reason'] or 'busy'})", "no_capacity")

    def _state_db(self, alloc_id: int) -> str:
        with self.ctx.db.read() as s:
            return s.query(Allocation.state).filter(Allocation.id == alloc_id).scalar()

    async def create(self, ident: Identity, req: AllocationRequest) -> dict:
        """A slice for a server. ``wait`` false: allocated now or refused (403 no quota left, 409 no capacity);
        true: queued, answered after the scheduler's decision; seconds: held up to that long while pending."""
        self.ctx.require_admin(ident)
        io = self.ctx.offload.io
        alloc_id = await io(self._insert_db, req)
        wait_s = 0.0 if isinstance(req.wait, bool) else min(float(req.wait), MAX_WAIT_S)
        await self._wait_decision(alloc_id, wait_s)
        return await io(self._decided_db, alloc_id, req.wait is not False)

    async def _wait_decision(self, alloc_id: int, wait_s: float):
        """Until the scheduling loop has decided (two passes: the first may have begun before the insert),
        and then while it is pending, up to ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait_s or DECISION_WAIT_S)
        passes = 0
        while loop.time() < deadline:
            if await self.ctx.controller.wait_for_pass(min(0.5, max(0.01, deadline - loop.time()))):
                passes += 1
            if await self.ctx.offload.io(self._state_db, alloc_id) != ALLOC_PENDING:
                return
            if wait_s == 0 and passes >= 2:
                return

    def _list_db(self, limit: int, after: int) -> dict:
        with self.ctx.db.read() as s:
            q = s.query(Allocation).filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)), Allocation.id > after)
            rows = q.order_by(Allocation.id).limit(limit + 1).all()
            more, rows = len(rows) > limit, rows[:limit]
            nxt = f"after={rows[-1].id}&limit={limit}" if more and rows else None
            return {"allocations": [alloc_json(r, self.ctx) for r in rows], "next": nxt}

    async def list(self, ident: Identity, limit: int | None = None, after: int = 0) -> dict:
        """Live allocations oldest first, a page at a time (``next``: the query of the following page)."""
        self.ctx.require_admin(ident)
        lim = self.ctx.limits
        if limit is None:
            limit = min(lim.default_page_size, lim.max_page_size)
        elif not 1 <= limit <= lim.max_page_size:
            raise Invalid(f"'limit' is between 1 and {lim.max_page_size} (Limits.max_page_size); follow 'next' for "
                          "the following page", "page_too_large")
        return await self.ctx.offload.io(self._list_db, limit, after)

    def _get_db(self, alloc_id: str) -> dict:
        with self.ctx.db.read() as s:
            return alloc_json(self._row(s, alloc_id), self.ctx)

    async def get(self, ident: Identity, alloc_id: str) -> dict:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._get_db, alloc_id)

    def _release_db(self, alloc_id: str) -> dict:
        with self.ctx.db.session() as s:
            row = self._row(s, alloc_id)
            s.execute(update(Allocation).where(Allocation.id == row.id, Allocation.state != ALLOC_RELEASED)
                      .values(state=ALLOC_RELEASED, released_at=utcnow()))
            s.flush()
            s.refresh(row)
            from .accounting import close_server  # accounting (issue 15 A): the interval ends in this transaction
            close_server(self.ctx, s, row.id)
            out = alloc_json(row, self.ctx)
        self.ctx.controller.wake()
        return out

    async def release(self, ident: Identity, alloc_id: str) -> dict:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._release_db, alloc_id)

    # ------------------------------------------------------------------ released by the service itself
    def _released_db(self, limit: int) -> list[dict]:
        with self.ctx.db.read() as s:
            q = (s.query(Allocation).filter(Allocation.state == ALLOC_RELEASED, Allocation.release_reason.isnot(None))
                 .order_by(Allocation.released_at.desc(), Allocation.id.desc()).limit(limit))
            return [{"id": r.id, "user": r.user, "tenant": r.tenant, "server_name": r.server_name,
                     "profile": r.profile, "released_at": iso(r.released_at), "reason": r.release_reason} for r in q]

    async def released(self, ident: Identity, limit: int = 100) -> dict:
        """Slices the service released by itself (reconciliation, a placement gone, preemption, refusal),
        newest first, and what the last reconciliation did."""
        self.ctx.require_admin(ident)
        if not 1 <= limit <= RELEASED_LIMIT:
            raise Invalid(f"limit must be between 1 and {RELEASED_LIMIT}", "bad_limit")
        return {"released": await self.ctx.offload.io(self._released_db, limit),
                "last_reconciliation": self.reconciler.last}

    async def reconcile(self, ident: Identity) -> dict:
        """Release now the slices no running or starting hub server holds (``aistack-hub up`` calls it once
        the hub is up; the service also does it every ``AIStackService.reconcile_interval_s``)."""
        self.ctx.require_admin(ident)
        try:
            return {"released": await self.reconciler.run_once()}
        except HubUnavailable as e:
            raise Unavailable(f"the hub could not be asked which servers run: {e}", "hub_unavailable") from e
