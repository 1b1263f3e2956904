"""``monitoring/...``: GPU history, workload samples, idle culling (decisions, keep, policies), alarms.

Thin handlers: arguments -> one ``MonitoringService`` call (in the I/O threads) -> JSON; refusals are
``DomainError``s, mapped to 4xx by ``APIHandler.write_error``.
"""
from __future__ import annotations

from .base import APIHandler
from aistack_hub.services.errors import Invalid


def _num(handler, name, kind=float, default=None):
    raw = handler.get_query_argument(name, "")
    if raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise Invalid(f"{name} must be a number, not {raw!r}") from None


class _Base(APIHandler):
    def initialize(self, api, monitoring):
        super().initialize(api)
        self.monitoring = monitoring

    async def run(self, fn, *args):
        self.write_json(await self.services.ctx.offload.io(fn, self.identity, *args))


def _id(raw: str) -> int:
    # the route's \d+ also matches non-ASCII digits, and more than 18 digits overflow SQLite's integer (500)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise Invalid(f"an allocation id is at most 18 digits 0-9, not {raw!r}")
    return int(raw)


class GPUHistoryHandler(_Base):
    async def get(self):
        await self.run(self.monitoring.gpus, _num(self, "since"), _num(self, "until"), _num(self, "points", int))


class WorkloadsHandler(_Base):
    async def get(self):
        await self.run(self.monitoring.workloads)


class MyIdleHandler(_Base):
    async def get(self):
        await self.run(self.monitoring.my_idle, self.get_query_argument("user", "") or None)


class IdleHandler(_Base):
    async def get(self, alloc):
        await self.run(self.monitoring.idle, _id(alloc))


class KeepHandler(_Base):
    async def post(self, alloc):
        body = await self.json_object()
        await self.run(self.monitoring.keep, _id(alloc), body.get("hours"))


class PolicyHandler(_Base):
    async def get(self, tenant):
        await self.run(self.monitoring.policy, tenant)

    async def put(self, tenant):
        await self.run(self.monitoring.set_policy, tenant, await self.json_object())


class IdleIntervalsHandler(_Base):
    async def get(self):
        since, until = _num(self, "since"), _num(self, "until")
        if since is None or until is None:
            raise Invalid("since and until (UNIX seconds) are required")
        await self.run(self.monitoring.idle_intervals, since, until, self.get_query_argument("tenant", "") or None)


class QueueHistoryHandler(_Base):
    async def get(self):
        await self.run(self.monitoring.queue, _num(self, "since"), _num(self, "until"), _num(self, "points", int))


class AlarmsHandler(_Base):
    async def get(self):
        await self.run(self.monitoring.alarms)


def monitoring_handlers(api_prefix: str, settings, monitoring) -> list:
    """Routes under ``<prefix>api/monitoring/`` (registered before the API's catch-all)."""
    m = api_prefix + "monitoring/"
    kw = {"api": settings, "monitoring": monitoring}
    return [
        (m + "gpus", GPUHistoryHandler, kw),
        (m + "workloads", WorkloadsHandler, kw),
        (m + "idle", MyIdleHandler, kw),
        (m + r"idle/(\d+)", IdleHandler, kw),
        (m + r"idle/(\d+)/keep", KeepHandler, kw),
        (m + "idle-intervals", IdleIntervalsHandler, kw),
        (m + r"policies/([^/]+)", PolicyHandler, kw),
        (m + "alarms", AlarmsHandler, kw),
        (m + "queue", QueueHistoryHandler, kw),
    ]
