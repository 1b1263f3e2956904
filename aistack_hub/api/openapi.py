"""The OpenAPI 3 description of the aistack API (served at api/openapi.json)."""
from __future__ import annotations

from aistack_hub.services.models import MAX_ALLOCATION_WAIT_S, MAX_RETRIES, MAX_TIMEOUT_S, RETRYABLE
from job_runner.db import JOB_STATES
from job_runner.failures import FAILURE_CLASSES
from job_runner.scheduling import PRIORITIES

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc, schema=None, ctype="application/json"):
    r = {"description": desc}
    if schema is not None:
        r["content"] = {ctype: {"schema": schema}}
    return r


def _errors(*codes):
    return {str(c): _resp("error", ERROR) for c in codes}


def _body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


SECONDS = {"type": "number", "minimum": 1, "maximum": MAX_TIMEOUT_S}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}


def _declare_path_parameters(paths: dict) -> None:
    """Every ``{name}`` of a path declared as a path parameter of each of its operations (OpenAPI requires
    it; an undeclared one makes the operation unusable to clients and to the fuzz test): ``id`` as ID,
    others as a plain string."""
    import re

    for path, ops in paths.items():
        names = re.findall(r"{([^}]+)}", path)
        for op in ops.values():
            declared = {p.get("name") for p in op.setdefault("parameters", []) if p.get("in") == "path"}
            for name in names:
                if name not in declared:
                    op["parameters"].append(ID if name == "id" else
                                            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
    "Notebook": {"type": "object", "description": "nbformat 4 JSON",
                 "required": ["cells", "metadata", "nbformat", "nbformat_minor"],
                 "properties": {"cells": {"type": "array", "items": {"type": "object"}},
                                "metadata": {"type": "object"}, "nbformat": {"type": "integer"},
                                "nbformat_minor": {"type": "integer"}}},
    "JobSubmit": {
        "type": "object", "required": ["profile"], "additionalProperties": False,
        "properties": {
            "notebook": {"$ref": "#/components/schemas/Notebook"},
            "path": {"type": "string", "description": "a notebook path in the user's home (if enabled)"},
            "parameters": {"type": "object"},
            "sweep": {"type": "object", "additionalProperties": {"type": "array"},
                      "description": "grid: name -> list of values; submits one job per combination"},
            "profile": {"type": "string"}, "tenant": {"type": "string"},
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "timeout_s": SECONDS, "expected_duration_s": SECONDS,
            "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
            "retry_on": {"type": "array", "items": {"type": "string", "enum": list(RETRYABLE)}},
            "kernel_name": {"type": "string"},
        }},
    "Job": {"type": "object", "required": ["id", "state", "user", "tenant"], "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "user": {"type": "string"},
        "tenant": {"type": "string"}, "profile": {"type": "string"}, "priority": {"type": "string"},
        "state": {"type": "string", "enum": list(JOB_STATES)}, "group_id": {"type": ["string", "null"]},
        "parameters": {"type": "object"}, "attempt": {"type": "integer"},
        "progress": {"type": ["object", "null"]}, "failure": {"type": ["object", "null"],
            "description": "{class: " + "|".join(FAILURE_CLASSES) + ", message, cell_label? (In [n]), code_cell?, input_cell_index?, cell_index? (in the output notebook), ename?, evalue?, link?, stopped_itself? (true: the run ended itself at an experiment's stop marker)}"},
        "queue_position": {"type": ["integer", "null"]}, "estimated_start": {"type": ["string", "null"]},
        "estimated_start_earliest": {"type": ["string", "null"]}, "estimated_start_latest": {"type": ["string", "null"]},
        "pending_reason": {"type": ["string", "null"]},
        "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]}, "events": {"type": "array", "items": {"type": "object"}},
    }},
    "JobList": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                                 "next": {"type": ["string", "null"]}}},
    "AllocationRequest": {"type": "object", "required": ["user", "tenant", "profile"], "additionalProperties": False,
                          "properties": {"user": {"type": "string"}, "tenant": {"type": "string"},
                                         "profile": {"type": "string"}, "server_name": {"type": "string"},
                                         "wait": {"oneOf": [{"type": "boolean"}, {"type": "number", "minimum": 0,
                                                                                  "maximum": MAX_ALLOCATION_WAIT_S}]},
                                         "priority": {"type": "string", "enum": list(PRIORITIES)}}},
    "Allocation": {"type": "object", "properties": {
        "id": {"type": "integer"}, "state": {"type": "string", "enum": ["pending", "allocated", "released"]},
        "assignment": {"type": ["object", "null"]},
        "position": {"type": ["integer", "null"]}, "estimated_start": {"type": ["string", "null"]},
        "estimated_start_earliest": {"type": ["string", "null"]}, "estimated_start_latest": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]}, "profile": {"type": "object"}}},
    "Tenant": {"type": "object", "properties": {
        "name": {"type": "string"}, "quotas": {"type": "object"}, "weight": {"type": "number", "exclusiveMinimum": 0},
        "cohort": {"type": ["string", "null"]}, "admins": {"type": "array", "items": {"type": "string"}},
        "emergency_users": {"type": "array", "items": {"type": "string"}},
        "high_users": {"type": "array", "items": {"type": "string"}},
        "max_high_share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "windows": {"type": "array"}, "idle_timeout_s": {"type": ["number", "null"]},
        "borrowing_limit_milli": {"type": ["integer", "null"]}}},
}


def openapi_spec(base_path: str = "/services/aistack/api") -> dict:
    jobs_tag = ["jobs"]
    paths = {
        "/jobs": {
            "post": {"tags": jobs_tag, "summary": "Submit a notebook job (or a sweep: one job per grid point)",
                     "requestBody": _body({"$ref": "#/components/schemas/JobSubmit"}),
                     "responses": {"201": _resp("the job, or {group_id, jobs} for a sweep",
                                                {"oneOf": [{"$ref": "#/components/schemas/Job"}, {"type": "object"}]}),
                                   **_errors(400, 401, 403, 409, 413, 415)}},
            "get": {"tags": jobs_tag, "summary": "List visible jobs, newest first",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(JOB_STATES)}},
                        {"name": "user", "in": "query", "schema": {"type": "string"}},
                        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                        {"name": "group_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "description": "at most Limits.max_page_size",
                         "schema": {"type": "integer", "minimum": 1}},
                        {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
                    "responses": {"200": _resp("a page of jobs", {"$ref": "#/components/schemas/JobList"}),
                                  **_errors(400, 401, 403)}},
        },
        "/jobs/inspect": {"post": {"tags": jobs_tag, "summary": "Parameters of a notebook (papermill's parser)",
                                   "requestBody": _body({"type": "object", "properties": {
                                       "notebook": {"$ref": "#/components/schemas/Notebook"}, "path": {"type": "string"}}}),
                                   "responses": {"200": _resp("parameters", {"type": "object"}),
                                                 **_errors(400, 401, 403, 413)}}},
        "/jobs/{id}": {"get": {"tags": jobs_tag, "summary": "A job with its history", "parameters": [ID],
                               "responses": {"200": _resp("the job", {"$ref": "#/components/schemas/Job"}),
                                             **_errors(401, 403, 404)}}},
        "/jobs/{id}/output": {"get": {
            "tags": jobs_tag, "summary": "The output notebook (partial while running): whole up to "
            "Limits.max_output_bytes, else in byte ranges (a Range header, or offset and length)",
            "parameters": [ID, {"name": "Range", "in": "header", "schema": {"type": "string",
                                                                            "pattern": "^bytes=[0-9]*-[0-9]*$"}},
                           {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                           {"name": "length", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
            "responses": {"200": _resp("nbformat JSON", {"type": "object"}, "application/x-ipynb+json"),
                          "206": _resp("a byte range of it (Content-Range)", {"type": "string"},
                                       "application/x-ipynb+json"),
                          **_errors(400, 401, 403, 404, 413, 416)}}},
        "/jobs/{id}/logs": {"get": {"tags": jobs_tag, "summary": "The job's log (follow=1 streams until it ends)",
                                    "parameters": [ID, {"name": "follow", "in": "query", "schema": {"type": "integer", "enum": [0]}},
                                                   {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                                    "responses": {"200": _resp("text", {"type": "string"}, "text/plain"),
                                                  **_errors(400, 401, 403, 404, 429)}}},
        "/jobs/{id}/cancel": {"post": {"tags": jobs_tag, "summary": "Cancel a job", "parameters": [ID],
                                       "responses": {"200": _resp("cancelled", {"$ref": "#/components/schemas/Job"}),
                                                     "202": _resp("cancel requested", {"$ref": "#/components/schemas/Job"}),
                                                     **_errors(401, 403, 404, 409)}}},
        "/jobs/{id}/rerun": {"post": {"tags": jobs_tag, "summary": "Submit the same job again", "parameters": [ID],
                                      "responses": {"201": _resp("the new job", {"$ref": "#/components/schemas/Job"}),
                                                    **_errors(400, 401, 403, 404, 409)}}},
        "/me": {"get": {"tags": ["profiles"], "summary": "The caller: tenants they may charge, admin and emergency grants",
                        "responses": {"200": _resp("the caller", {"type": "object"}), **_errors(401, 403)}}},
        "/profiles": {"get": {"tags": ["profiles"], "summary": "Profiles this user may pick, with free capacity and quota left",
                              "parameters": [{"name": "tenant", "in": "query", "schema": {"type": "string"}},
                                             {"name": "user", "in": "query", "schema": {"type": "string"}}],
                              "responses": {"200": _resp("profiles", {"type": "object"}), **_errors(400, 401, 403)}}},
        "/allocations": {
            "post": {"tags": ["allocations"], "summary": "A server slice (the hub's token or an admin)",
                     "requestBody": _body({"$ref": "#/components/schemas/AllocationRequest"}),
                     "responses": {"201": _resp("allocated or pending", {"$ref": "#/components/schemas/Allocation"}),
                                   **_errors(400, 401, 403, 409)}},
            "get": {"tags": ["allocations"], "summary": "Live allocations (admins), oldest first, a page at a time",
                    "parameters": [
                        {"name": "limit", "in": "query", "description": "at most Limits.max_page_size",
                         "schema": {"type": "integer", "minimum": 1}},
                        {"name": "after", "in": "query", "description": "the id after which the page starts",
                         "schema": {"type": "integer", "minimum": 0}}],
                    "responses": {"200": _resp("allocations and next (the query of the following page, or null)",
                                               {"type": "object"}), **_errors(400, 401, 403)}}},
        "/allocations/{id}": {
            "get": {"tags": ["allocations"], "parameters": [ID], "summary": "An allocation",
                    "responses": {"200": _resp("the allocation", {"$ref": "#/components/schemas/Allocation"}),
                                  **_errors(401, 403, 404)}},
            "delete": {"tags": ["allocations"], "parameters": [ID], "summary": "Release an allocation",
                       "responses": {"200": _resp("released", {"$ref": "#/components/schemas/Allocation"}),
                                     **_errors(401, 403, 404)}}},
        "/tenants": {"get": {"tags": ["tenants"], "summary": "Tenants the caller administers",
                             "responses": {"200": _resp("tenants", {"type": "object"}), **_errors(401, 403)}}},
        "/tenants/{name}": {
            "get": {"tags": ["tenants"], "parameters": [NAME], "summary": "A tenant (admins, its tenant admins)",
                    "responses": {"200": _resp("tenant", {"$ref": "#/components/schemas/Tenant"}), **_errors(401, 403, 404)}},
            "put": {"tags": ["tenants"], "parameters": [NAME], "summary": "Create or replace a tenant (admins)",
                    "requestBody": _body({"$ref": "#/components/schemas/Tenant"}),
                    "responses": {"200": _resp("replaced", {"$ref": "#/components/schemas/Tenant"}),
                                  "201": _resp("created", {"$ref": "#/components/schemas/Tenant"}),
                                  **_errors(400, 401, 403, 413, 415)}},
            "patch": {"tags": ["tenants"], "parameters": [NAME],
                      "summary": "Change some fields of a tenant (admins); a new name renames an idle tenant",
                      "requestBody": _body({"$ref": "#/components/schemas/Tenant"}),
                      "responses": {"200": _resp("changed", {"$ref": "#/components/schemas/Tenant"}),
                                    **_errors(400, 401, 403, 404, 409, 413, 415)}},
            "delete": {"tags": ["tenants"], "parameters": [NAME],
                       "summary": "Delete a tenant without queued or running work (admins)",
                       "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 404, 409)}}},
        "/retention": {"get": {"tags": ["usage"], "summary": "What the cleanup of finished jobs removed (admins)",
                               "responses": {"200": _resp("settings, last runs, totals", {"type": "object"}),
                                             **_errors(401, 403)}}},
        "/usage": {"get": {"tags": ["usage"], "summary": "Usage per tenant and user, GPU-hours of 14 days",
                           "responses": {"200": _resp("usage", {"type": "object"}), **_errors(401, 403)}}},
        "/inventory": {"get": {"tags": ["usage"], "summary": "Nodes and GPUs, their use, and the workloads the "
                               "caller may see (other tenants' only for platform admins)",
                               "responses": {"200": _resp("inventory", {"type": "object"}), **_errors(401, 403)}}},
    }
    # --- accounting (issue 15 A) ---
    from .accounting import openapi_paths as _accounting_paths
    paths.update(_accounting_paths())
    # --- end accounting ---
    # --- experiments (issue 13) ---
    from .experiments import openapi_paths as _experiment_paths
    paths.update(_experiment_paths())
    # --- pipelines, schedules, monitoring, storage, environments, internal (issues 14, 15 B/C) ---
    from .openapi_more import SECURITY_SCHEMES as _more_schemes, paths as _more_paths
    paths.update(_more_paths())
    _declare_path_parameters(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "aistack service API", "version": "1",
                 "description": "Notebook jobs, GPU-slice allocations, tenants and quotas of AIStack Hub. "
                                "Auth: 'Authorization: token <JupyterHub token>'."},
        "servers": [{"url": base_path}],
        "security": [{"token": []}],
        "components": {"securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization"},
                                           **_more_schemes},
                       "schemas": SCHEMAS},
        "paths": paths,
    }
