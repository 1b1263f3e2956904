"""URL routes of the aistack API."""
from __future__ import annotations

import json

from tornado.web import RequestHandler

from .accounting import accounting_routes  # accounting (issue 15 A)
from .allocations import AllocationHandler, AllocationsHandler, ReconcileAllocationsHandler, ReleasedAllocationsHandler
from .jobs import (
    InspectHandler,
    JobCancelHandler,
    JobHandler,
    JobLogsHandler,
    JobOutputHandler,
    JobRerunHandler,
    JobsHandler,
)
from .openapi import openapi_spec
from .experiments import experiment_routes  # --- experiments (issue 13) ---
from .pod import PodInputHandler, PodOutputHandler, PodProgressHandler, PodResultHandler
from .retention import RetentionHandler
from .tenants import ProfilesHandler, TenantHandler, ViewHandler

# --- storage + environments (issue 15 C) ---
from .environments import EnvironmentHandler, EnvironmentsHandler  # noqa: E402
from .storage import (DatasetHandler, DatasetsHandler, MountsHandler, StorageHandler,  # noqa: E402
                      TenantStorageHandler, VolumesHandler)
# --- end storage + environments ---


# --- pipelines + schedules (issue 14) ---
def _pipelines_routes(api: str, kw: dict) -> list:
    from .pipelines import routes as pipeline_routes
    from .schedules import routes as schedule_routes

    return pipeline_routes(api, kw) + schedule_routes(api, kw)
# --- end pipelines + schedules ---


class OpenAPIHandler(RequestHandler):
    def initialize(self, base_path):
        self.base_path = base_path

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(openapi_spec(self.base_path)))


class NotFoundHandler(RequestHandler):
    def prepare(self):
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "not_found", "message": f"no API endpoint {self.request.path}"}))


def api_handlers(prefix: str, settings) -> list:
    """Routes under ``<prefix>api/`` (prefix: the service's URL prefix, ending in '/'; settings: APISettings)."""
    api = prefix + "api/"
    kw = {"api": settings}
    job = r"jobs/([^/]+)"
    return [
        (api + "openapi.json", OpenAPIHandler, {"base_path": api.rstrip("/")}),
        (api + "jobs/inspect", InspectHandler, kw),
        (api + "jobs", JobsHandler, kw),
        (api + job, JobHandler, kw),
        (api + job + "/output", JobOutputHandler, kw),
        (api + job + "/logs", JobLogsHandler, kw),
        (api + job + "/cancel", JobCancelHandler, kw),
        (api + job + "/rerun", JobRerunHandler, kw),
        (api + job + "/pod/input", PodInputHandler, kw),
        (api + job + "/pod/output", PodOutputHandler, kw),
        (api + job + "/pod/progress", PodProgressHandler, kw),
        (api + job + "/pod/result", PodResultHandler, kw),
        (api + "allocations", AllocationsHandler, kw),
        (api + "allocations/released", ReleasedAllocationsHandler, kw),
        (api + "allocations/reconcile", ReconcileAllocationsHandler, kw),
        (api + r"allocations/([^/]+)", AllocationHandler, kw),
        (api + "tenants", ViewHandler, {**kw, "view": "administered"}),
        (api + r"tenants/([^/]+)", TenantHandler, kw),
        (api + "usage", ViewHandler, {**kw, "view": "usage"}),
        (api + "inventory", ViewHandler, {**kw, "view": "inventory"}),
        (api + "profiles", ProfilesHandler, kw),
        (api + "me", ViewHandler, {**kw, "view": "me"}),
        (api + "retention", RetentionHandler, kw),
        # --- storage + environments (issue 15 C) ---
        (api + "storage", StorageHandler, kw),
        (api + "storage/mounts", MountsHandler, kw),
        (api + "storage/volumes", VolumesHandler, kw),
        (api + r"storage/([^/]+)", TenantStorageHandler, kw),
        (api + "datasets", DatasetsHandler, kw),
        (api + r"datasets/([^/]+)", DatasetHandler, kw),
        (api + "environments", EnvironmentsHandler, kw),
        (api + r"environments/([^/]+)", EnvironmentHandler, kw),
        # --- end storage + environments ---
    ] + _pipelines_routes(api, kw) + [  # --- pipelines + schedules (issue 14) ---
        # --- accounting (issue 15 A) ---
        *accounting_routes(api, kw),
        # --- end accounting ---
        # --- experiments (issue 13) ---
        *experiment_routes(api, kw),
        (api + r".*", NotFoundHandler),
    ]
