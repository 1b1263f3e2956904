"""Pipelines (issue 14): runs of a pipeline file, a task's retry, cancel; the file's JSON schema; the
owner's notifications (the lab extension polls them). A bad file is answered 400 with its ``line``."""
from __future__ import annotations

from aistack_hub.services.errors import Invalid
from aistack_hub.services.pipelines import SpecInvalid

from .base import APIHandler


def _int(handler, name):
    raw = handler.get_query_argument(name, "")
    if raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise Invalid(f"'{name}' is a non-negative integer")
    return int(raw)


class _Base(APIHandler):
    @property
    def pipelines(self):
        return self.services.pipelines

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, SpecInvalid):
            self.set_status(400)
            return self.finish({"error": exc.code, "message": exc.message, "line": exc.line})
        return super().write_error(status_code, **kwargs)


class PipelineRunsHandler(_Base):
    async def post(self):
        out = await self.pipelines.create(self.identity, await self.json_object())
        self.set_header("Location", f"pipelines/runs/{out['id']}")
        self.write_json(out, 201)

    async def get(self):
        out = await self.pipelines.list(self.identity, _int(self, "limit"), _int(self, "before"),
                                        self.get_query_argument("state", None) or None)
        self.write_json(out)


class PipelineRunHandler(_Base):
    async def get(self, run_id):
        self.write_json(await self.pipelines.get(self.identity, run_id))


class PipelineRetryHandler(_Base):
    async def post(self, run_id, key):
        self.write_json(await self.pipelines.retry(self.identity, run_id, key), 202)


class PipelineCancelHandler(_Base):
    async def post(self, run_id):
        self.write_json(await self.pipelines.cancel(self.identity, run_id), 202)


class PipelineValidateHandler(_Base):
    async def post(self):
        self.write_json(await self.pipelines.validate(self.identity, await self.json_object()))


class PipelineSchemaHandler(_Base):
    auth_required = False

    def get(self):
        self.set_header("Content-Type", "application/schema+json")
        self.write_json(self.pipelines.schema())


class NotificationsHandler(_Base):
    async def get(self):
        self.write_json(await self.pipelines.notifications(self.identity, _int(self, "after") or 0,
                                                           _int(self, "limit") or 50))


def routes(api: str, kw: dict) -> list:
    run = r"pipelines/runs/([^/]+)"
    return [
        (api + "pipelines/schema", PipelineSchemaHandler, kw),
        (api + "pipelines/validate", PipelineValidateHandler, kw),
        (api + "pipelines/runs", PipelineRunsHandler, kw),
        (api + run, PipelineRunHandler, kw),
        (api + run + "/cancel", PipelineCancelHandler, kw),
        (api + run + r"/tasks/([^/]+)/retry", PipelineRetryHandler, kw),
        (api + "notifications", NotificationsHandler, kw),
    ]
