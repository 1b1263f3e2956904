"""Server slices for the hub's spawner: POST/GET/DELETE allocations (the hub's token, or an admin)."""
from __future__ import annotations

from aistack_hub.services.models import AllocationRequest

from .base import APIHandler
from .errors import APIError


class AllocationsHandler(APIHandler):
    async def post(self):
        self.services.ctx.require_admin(self.identity)  # before reading the body
        out = await self.services.allocations.create(self.identity, await self.body(AllocationRequest))
        self.write_json(out, 201)

    async def get(self):
        limit = self._whole("limit")
        out = await self.services.allocations.list(self.identity, limit, self._whole("after") or 0)
        if out.get("next"):
            self.set_header("Link", f'<allocations?{out["next"]}>; rel="next"')
        self.write_json(out)

    def _whole(self, name: str) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "¹".isdigit(), and int() refuses it
            raise APIError(400, f"bad_{name}", f"{name} must be a whole number of at most 18 digits")
        return int(raw)


class AllocationHandler(APIHandler):
    async def get(self, alloc_id):
        self.write_json(await self.services.allocations.get(self.identity, alloc_id))

    async def delete(self, alloc_id):
        self.write_json(await self.services.allocations.release(self.identity, alloc_id))


class ReleasedAllocationsHandler(APIHandler):
    async def get(self):
        raw = self.get_argument("limit", "100")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise APIError(400, "bad_limit", "limit must be a whole number")
        self.write_json(await self.services.allocations.released(self.identity, int(raw)))


class ReconcileAllocationsHandler(APIHandler):
    async def post(self):
        self.write_json(await self.services.allocations.reconcile(self.identity))
