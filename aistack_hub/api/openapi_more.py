"""openapi.json for the endpoints of issues 14 and 15 (pipelines, schedules, notifications, monitoring,
storage, datasets, environments) and the internal ones (job pods, the hub's allocation calls, the document
itself), merged in by ``aistack_hub.api.openapi``.

Bodies and query arguments are described as the handlers read them: the request models' own JSON schema
where there is a model (storage, environments), else the fields the service reads. Every registered route
is here: ``tests/job_service/test_openapi_routes.py`` fails when one is missing (the fuzz test only sends
what the document names).
"""
from __future__ import annotations

from aistack_hub.services.environments import EnvironmentBody, EnvironmentsQuery
from aistack_hub.services.monitoring import LATEST_S
from aistack_hub.services.pipelines import RUN_STATES
from aistack_hub.services.schedules import KINDS
from aistack_hub.services.storage import DatasetBody, MountsQuery, QuotaBody, StorageQuery
from job_runner.monitoring.culling import POLICY_KEYS
from job_runner.schedules import CATCH_UP, CONCURRENCY

ERROR = {"$ref": "#/components/schemas/Error"}
OBJ = {"type": "object"}
NO_AUTH: list = []  # an operation's ``security``: none (the per-job token, or public)
JOB_TOKEN = [{"jobToken": []}]


def _resp(desc, schema=OBJ, ctype="application/json"):
    return {"description": desc, "content": {ctype: {"schema": schema}}}


def _op(tag, summary, ok="200", codes=(400, 401, 403, 404), body=None, params=(), desc="the answer", **extra):
    op = {"tags": [tag], "summary": summary, "parameters": list(params),
          "responses": {ok: ({"description": desc} if ok == "204" else _resp(desc)),
                        **{str(c): _resp("error", ERROR) for c in codes}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    op.update(extra)
    return op


def _query(name, schema, required=False, desc=None):
    p = {"name": name, "in": "query", "required": required, "schema": schema}
    if desc:
        p["description"] = desc
    return p


def _clean(schema, names: bool = False):
    """A pydantic JSON schema without its titles (noise in the document); ``names``: ``schema`` maps field
    names to schemas (``properties``), where a field may be called "title"."""
    if isinstance(schema, dict):
        return {k: _clean(v, k in ("properties", "$defs") and not names) for k, v in schema.items()
                if names or k != "title"}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def model_body(model) -> dict:
    return _clean(model.model_json_schema())


def model_query(model, only=None) -> list:
    """A query model's fields as query parameters (``_Query`` ignores others; an empty value is absent)."""
    s = _clean(model.model_json_schema())
    out = []
    for name, field in s["properties"].items():
        if only is not None and name not in only:
            continue
        field = dict(field)
        field.pop("default", None)
        if "anyOf" in field:  # "x | None": absent is None; in a query it is the non-null member
            field = next(m for m in field["anyOf"] if m.get("type") != "null")
        out.append(_query(name, field, name in s.get("required", ())))
    return out


WHOLE = {"type": "integer", "minimum": 0, "maximum": 999_999_999_999}  # pipelines' _int: at most 12 digits
SECONDS = {"type": "number", "minimum": 0, "maximum": LATEST_S, "description": "UNIX seconds"}
SPAN = [_query("since", SECONDS), _query("until", SECONDS),
        _query("points", {"type": "integer", "minimum": 1}, desc="buckets at most (Monitor.history_points)")]
SPEC = {"oneOf": [{"type": "string", "description": "the pipeline file's text (YAML)"},
                  {"type": "object", "description": "the same as JSON"}]}
PATH = {"type": "string", "description": "a *.pipeline.yaml relative to your home (if the deployment has homes)"}
PIPELINE_SOURCE = {"type": "object", "properties": {"spec": SPEC, "path": PATH},
                   "description": "exactly one of spec or path"}
NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,39}$"}


def pipelines() -> dict:
    t, run = "pipelines", "/pipelines/runs/{id}"
    return {
        "/pipelines/schema": {"get": {
            "tags": [t], "summary": "The JSON schema of a pipeline file (public)", "security": NO_AUTH,
            "responses": {"200": _resp("JSON schema", OBJ, "application/schema+json")}}},
        "/pipelines/validate": {"post": _op(
            t, "Check a pipeline file: its tasks, or 400 with the line at fault", codes=(400, 401, 403, 413, 415),
            body={**PIPELINE_SOURCE, "additionalProperties": False})},
        "/pipelines/runs": {
            "post": _op(t, "Start a run of a pipeline file (each task attempt is a job)", ok="201",
                        codes=(400, 401, 403, 409, 413, 415),
                        body={"type": "object", "additionalProperties": False,
                              "description": "exactly one of spec or path",
                              "properties": {"spec": SPEC, "path": PATH, "tenant": {"type": "string"}}}),
            "get": _op(t, "Runs the caller may see, newest first (pages)", codes=(400, 401, 403), params=[
                _query("limit", WHOLE), _query("before", WHOLE, desc="the id before which the page starts"),
                _query("state", {"type": "string", "enum": list(RUN_STATES)})])},
        run: {"get": _op(t, "A run with its tasks and nodes")},
        run + "/cancel": {"post": _op(t, "Cancel a run (its running jobs are cancelled)", ok="202",
                                      codes=(401, 403, 404, 409))},
        run + "/tasks/{key}/retry": {"post": _op(t, "Retry a failed task (a node key or a task name)", ok="202",
                                                 codes=(401, 403, 404, 409))},
        "/notifications": {"get": _op(t, "The caller's notifications after an id (the lab polls them)",
                                      codes=(400, 401, 403), params=[
                                          _query("after", WHOLE), _query("limit", WHOLE, desc="at most 200")])},
    }


def schedules() -> dict:
    t, one = "schedules", "/schedules/{id}"
    body = {"type": "object", "additionalProperties": False, "required": ["name", "kind", "target"],
            "properties": {
                "name": NAME, "tenant": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
                "target": {"type": "object", "description": "notebook: the fields of POST jobs with 'path'; "
                           "pipeline: {spec|path}; experiment: the fields of POST experiments with 'path'"},
                "cron": {"type": "string", "description": "5 fields (6 with seconds); or on_window"},
                "timezone": {"type": "string", "description": "an IANA name (default UTC)"},
                "on_window": {"type": "boolean", "description": "fire when the tenant's window opens"},
                "concurrency_policy": {"type": "string", "enum": list(CONCURRENCY)},
                "catch_up": {"type": "string", "enum": list(CATCH_UP)},
                "catch_up_max": {"type": "integer", "minimum": 1,
                                 "description": "at most ScheduleSettings.max_catch_up"},
                "starting_deadline_s": {"type": "number", "minimum": 1, "maximum": 86400}}}
    holidays = {"type": "object", "required": ["days"], "properties": {"days": {
        "type": "array", "maxItems": 1000, "items": {"type": "object", "required": ["date"], "properties": {
            "date": {"type": "string", "format": "date"}, "name": {"type": ["string", "null"]}}}}}}
    return {
        "/schedules": {
            "post": _op(t, "Create a schedule (a notebook, pipeline or experiment on a cron or a window)", ok="201",
                        codes=(400, 401, 403, 409, 413, 415), body=body),
            "get": _op(t, "Schedules the caller may see, newest first (pages)", codes=(400, 401, 403), params=[
                _query("limit", WHOLE), _query("before", WHOLE)])},
        "/schedules/holidays/{tenant}": {
            "get": _op(t, "A tenant's holidays (its members and admins)", codes=(401, 403, 404)),
            "put": _op(t, "Replace a tenant's holidays (its admins)", codes=(400, 401, 403, 404, 413, 415),
                       body=holidays)},
        one: {"get": _op(t, "A schedule with its history of fires", codes=(401, 403, 404)),
              "delete": _op(t, "Delete a schedule", codes=(401, 403, 404))},
        one + "/pause": {"post": _op(t, "Pause a schedule", codes=(401, 403, 404))},
        one + "/resume": {"post": _op(t, "Resume a schedule (what fell while paused is not caught up)",
                                      codes=(401, 403, 404))},
        one + "/run": {"post": _op(t, "Fire a schedule now", ok="201", codes=(400, 401, 403, 404, 409))},
    }


def monitoring() -> dict:
    t, idle = "monitoring", "/monitoring/idle/{id}"
    alloc = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    num_or_null = {"type": ["number", "null"]}
    policy = {"type": "object", "additionalProperties": False, "description": "null: the default",
              "properties": {k: ({"type": ["boolean", "null"]} if k == "enabled" else num_or_null)
                             for k in POLICY_KEYS}}
    return {
        "/monitoring/gpus": {"get": _op(t, "GPU utilisation history (platform admins)", codes=(400, 401, 403),
                                        params=SPAN)},
        "/monitoring/workloads": {"get": _op(t, "The latest sample of each workload the caller may see",
                                             codes=(401, 403))},
        "/monitoring/idle": {"get": _op(t, "The idle state of the caller's (admins: user's) GPU servers",
                                        codes=(401, 403), params=[_query("user", {"type": "string"})])},
        idle: {"get": _op(t, "The idle-culling decision of an allocation", codes=(400, 401, 403, 404),
                          params=[alloc])},
        idle + "/keep": {"post": _op(
            t, "Keep a server from being culled for some hours", codes=(400, 401, 403, 404, 413, 415),
            params=[alloc], body={"type": "object", "required": ["hours"], "properties": {
                "hours": {"type": "number", "description": "at most Monitor.max_keep_hours; 0 ends a keep"}}})},
        "/monitoring/idle-intervals": {"get": _op(
            t, "Idle GPU intervals in a span (a tenant's admins, or platform admins for all)",
            codes=(400, 401, 403, 404), params=[_query("since", SECONDS, True), _query("until", SECONDS, True),
                                                _query("tenant", {"type": "string"})])},
        "/monitoring/policies/{tenant}": {
            "get": _op(t, "A tenant's culling policy: override, default, effective", codes=(401, 403, 404)),
            "put": _op(t, "Change a tenant's culling policy override (its admins)",
                       codes=(400, 401, 403, 404, 413, 415), body=policy)},
        "/monitoring/alarms": {"get": _op(t, "Open alarms (platform admins)", codes=(401, 403))},
        "/monitoring/queue": {"get": _op(t, "Queue length and mean wait per time bucket (platform admins)",
                                         codes=(400, 401, 403), params=SPAN)},
    }


def storage() -> dict:
    t = "storage"
    return {
        "/storage": {"get": _op(t, "Usage against quota of the tenants the caller may see (pages)",
                                params=model_query(StorageQuery))},
        "/storage/mounts": {"get": _op(t, "The binds of a workload of tenant and user (the hub, admins)",
                                       params=model_query(MountsQuery))},
        "/storage/volumes": {"get": _op(t, "The Kubernetes volumes and claims of a pod of a tenant (the hub, admins)",
                                        params=[_query("tenant", {"type": "string"})])},
        "/storage/{tenant}": {
            "get": _op(t, "A tenant's usage against its quota", params=model_query(StorageQuery, {"fresh"})),
            "put": _op(t, "Set a tenant's quota (null: the default; platform admins)",
                       codes=(400, 401, 403, 404, 413, 415), body=model_body(QuotaBody))},
        "/datasets": {"get": _op(t, "Datasets published to the caller's tenants (admins: all), pages",
                                 codes=(400, 401, 403), params=model_query(StorageQuery, {"limit", "offset"}))},
        "/datasets/{name}": {
            "put": _dataset_put(t),
            "delete": _op(t, "Unpublish a dataset (its files stay)", ok="204", codes=(401, 403, 404))},
    }


def _dataset_put(t):
    op = _op(t, "Create or replace a dataset and the tenants it is published to (platform admins)",
             codes=(400, 401, 403, 413, 415), body=model_body(DatasetBody), desc="replaced")
    op["responses"]["201"] = _resp("created")
    return op


def environments() -> dict:
    t = "environments"
    put = _op(t, "Create or replace an environment (platform admins)", codes=(400, 401, 403, 413, 415),
              body=model_body(EnvironmentBody), desc="replaced")
    put["responses"]["201"] = _resp("created")
    return {
        "/environments": {"get": _op(t, "The environments offered to the caller's tenants (admins: all), pages",
                                     params=model_query(EnvironmentsQuery))},
        "/environments/{name}": {
            "put": put, "delete": _op(t, "Remove an environment", ok="204", codes=(401, 403, 404))},
    }


def internal() -> dict:
    """The document itself, the hub's allocation calls, and the job pods' calls (a per-job token)."""
    pod = "/jobs/{id}/pod/"
    pod_codes = (400, 403, 404, 409, 413)
    return {
        "/openapi.json": {"get": {"tags": ["meta"], "summary": "This document (public)", "security": NO_AUTH,
                                  "responses": {"200": _resp("OpenAPI 3")}}},
        "/allocations/released": {"get": _op(
            "allocations", "Slices the service released by itself, newest first (the hub, admins)",
            codes=(400, 401, 403), params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})])},
        "/allocations/reconcile": {"post": _op(
            "allocations", "Release now the slices no hub server holds (the hub, admins)", codes=(401, 403, 503))},
        pod + "input": {"get": _op("pods", "The attempt's notebook, parameters and kernel", codes=(403, 404),
                                   security=JOB_TOKEN)},
        pod + "output": {"put": {
            "tags": ["pods"], "summary": "The attempt's output notebook so far", "security": JOB_TOKEN,
            "requestBody": {"required": True, "content": {"application/json": {"schema": OBJ}}},
            "responses": {"200": _resp("stored"), **{str(c): _resp("error", ERROR) for c in pod_codes}}}},
        pod + "progress": {"post": _op(
            "pods", "Progress (cell of total) and log lines of the attempt; the answer's 'stop' (a pruned or "
            "stopped experiment trial) is the stop marker the pod writes for report()", codes=pod_codes,
            security=JOB_TOKEN,
            body={"type": "object", "properties": {"cell": {"type": ["integer", "null"], "minimum": 0},
                                                   "total": {"type": ["integer", "null"], "minimum": 0},
                                                   "log": {"type": ["string", "null"]}}})},
        pod + "result": {"post": _op(
            "pods", "The attempt's end: ok, or its failure", codes=pod_codes, security=JOB_TOKEN,
            body={"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"},
                                                                       "failure": {"type": "object"}}})},
        pod + "metrics": {"post": {
            "tags": ["pods"], "summary": "report() lines of the attempt (experiments); the answer carries "
            "'stop' as progress does", "security": JOB_TOKEN,
            "requestBody": {"required": True, "content": {"text/plain": {"schema": {
                "type": "string", "description": "JSON lines, one report() each"}}}},
            "responses": {"200": _resp("stored"), **{str(c): _resp("error", ERROR) for c in pod_codes}}}},
    }


def paths() -> dict:
    return {**pipelines(), **schedules(), **monitoring(), **storage(), **environments(), **internal()}


SECURITY_SCHEMES = {"jobToken": {"type": "apiKey", "in": "header", "name": "X-Aistack-Job-Token",
                                 "description": "the per-job token of a job pod's attempt"}}
