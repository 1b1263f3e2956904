"""Notebook jobs: submit (one, or a sweep), list, show, output, logs (follow), cancel, rerun, inspect."""
from __future__ import annotations

import asyncio
import json
import math
import os
import re
import uuid

from sqlalchemy import or_, update

from job_runner.db import (
    ACTIVE_STATES,
    CANCELLED,
    FINAL_STATES,
    JOB_STATES,
    QUEUED,
    Job,
    JobEvent,
    TenantRow,
    utcnow,
)
from job_runner.db.ops import iso, transition
from job_runner.failures import CANCELLED as F_CANCELLED
from job_runner.failures import DEFAULT_RETRY_ON, FAILURE_CLASSES, failure
from job_runner.params import ParameterError, expand_sweep, inspect_parameters, validate_parameters
from job_runner.queue import job_spec
from job_runner.scheduling import PRIORITIES, Workload

from .base import APIError, APIHandler

K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_TIMEOUT_S = 30 * 86400
MAX_RETRIES = 10


def k8s_name_from(text: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", os.path.splitext(os.path.basename(text or "job"))[0].lower()).strip("-")
    return (base or "job")[:50].strip("-") or "job"


def job_json(row: Job, ctx, detail: bool = False) -> dict:
    out = {
        "id": row.id, "name": row.name, "user": row.user, "tenant": row.tenant, "profile": row.profile,
        "priority": row.priority, "state": row.state, "group_id": row.group_id,
        "parameters": row.parameters or {}, "kernel_name": row.kernel_name, "notebook_path": row.notebook_path,
        "timeout_s": row.timeout_s, "max_retries": row.max_retries, "retry_on": row.retry_on or [],
        "attempt": row.attempt, "progress": row.progress, "failure": row.failure,
        "cancel_requested": bool(row.cancel_requested),
        "created_at": iso(row.created_at), "admitted_at": iso(row.admitted_at), "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at), "updated_at": iso(row.updated_at),
        "queue_position": None, "estimated_start": None, "pending_reason": None,
    }
    if row.state == QUEUED:
        info = ctx.queue.pending_info(row.id) if ctx.queue is not None else None
        if info is not None:
            out["queue_position"] = info.position
            out["pending_reason"] = info.reason
            if info.estimated_start is not None and math.isfinite(info.estimated_start):
                out["estimated_start"] = iso(__import__("datetime").datetime.utcfromtimestamp(info.estimated_start))
    if detail:
        out["assignment"] = row.assignment
        out["env"] = row.env
        out["events"] = [
            {"at": iso(e.at), "from": e.from_state, "to": e.to_state, "attempt": e.attempt, "message": e.message}
            for e in row.events
        ]
    return out


class JobAccess:
    """Visibility rules shared by the job handlers."""

    def visible_filter(self, q):
        ident = self.identity
        if ident.is_admin:
            return q
        tenants = self.admin_tenants()
        if tenants:
            return q.filter(or_(Job.user == ident.name, Job.tenant.in_(tenants)))
        return q.filter(Job.user == ident.name)

    def get_job(self, s, job_id: str) -> Job:
        try:
            jid = int(job_id)
        except ValueError:
            raise APIError(404, "not_found", f"no job {job_id!r}") from None
        if jid > 2**62:
            raise APIError(404, "not_found", f"no job {job_id!r}")
        row = s.get(Job, jid)
        if row is None or not self.may_see(row):
            raise APIError(404, "not_found", f"no job {job_id!r}")
        return row

    def may_see(self, row: Job) -> bool:
        ident = self.identity
        return ident.is_admin or row.user == ident.name or ident.name in self.ctx.tenant_admins(row.tenant)


# ----------------------------------------------------------------------------------------------- submit
def _read_notebook(handler, body: dict) -> tuple[nbformat.NotebookNode, str | None]:
    import nbformat  # here, not at import: the service must start within JupyterHub's check

    nb_json, path = body.get("notebook"), body.get("path")
    if (nb_json is None) == (path is None):
        raise APIError(400, "bad_request", "send exactly one of 'notebook' (nbformat JSON) or 'path'")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise APIError(400, "bad_request", "'path' must be a non-empty string")
        root_tpl = handler.ctx.notebook_root
        if not root_tpl:
            raise APIError(400, "path_unsupported", "this deployment takes notebook content, not paths: send 'notebook'")
        root = os.path.realpath(root_tpl.format(user=handler.identity.name))
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if path.startswith("/") or ".." in path.split("/") or not (full + os.sep).startswith(root + os.sep):
            raise APIError(400, "bad_path", "the path must stay inside your home directory")
        if not full.endswith(".ipynb") or not os.path.isfile(full):
            raise APIError(400, "bad_path", f"no notebook at {path!r}")
        if os.path.getsize(full) > handler.ctx.max_body_bytes:
            raise APIError(413, "too_large", "the notebook is too large")
        with open(full, encoding="utf-8") as f:
            try:
                nb_json = json.load(f)
            except ValueError as e:
                raise APIError(400, "bad_notebook", f"{path} is not JSON: {e}") from None
    if not isinstance(nb_json, dict):
        raise APIError(400, "bad_notebook", "'notebook' must be an nbformat JSON object")
    try:
        nb = nbformat.from_dict(nb_json)
        if nb.get("nbformat") != 4:
            raise ValueError("only nbformat 4 notebooks are supported")
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds; all mean "not a notebook"
        raise APIError(400, "bad_notebook", f"not a valid notebook: {str(e).splitlines()[0][:300]}") from None
    return nb, path


def _kernel_name(handler, body, nb) -> str | None:
    name = body.get("kernel_name")
    if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name)):
        raise APIError(400, "bad_request", "'kernel_name' must be a kernel name like 'python3'")
    name = name or (nb.metadata.get("kernelspec") or {}).get("name")
    if name and handler.ctx.validate_kernels:
        from jupyter_client.kernelspec import KernelSpecManager

        if name not in KernelSpecManager().find_kernel_specs():
            raise APIError(400, "unknown_kernel", f"no kernel {name!r} is installed here")
    return name


def _number(body, key, default, lo, hi, integer=False):
    v = body.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise APIError(400, "bad_request", f"'{key}' must be {'an integer' if integer else 'a number'}")
    if not (lo <= v <= hi) or (isinstance(v, float) and not math.isfinite(v)):
        raise APIError(400, "bad_request", f"'{key}' must be within [{lo}, {hi}]")
    return v


VERDICT_STATUS = {"over_quota": 403, "forbidden": 403, "server_limit": 403, "queue_full": 403,
                  "never_fits": 409, "unknown_tenant": 400, "invalid": 400, "duplicate": 409}


def pick_tenant(handler, requested) -> str:
    from aistack_hub.config import load_tenants

    tenants = {t.name for t in load_tenants(handler.ctx.db)}
    ident = handler.identity
    if requested is not None:
        if not isinstance(requested, str) or requested not in tenants:
            raise APIError(400, "unknown_tenant", f"no tenant {requested!r}")
        if not (ident.is_admin or requested in ident.groups):
            raise APIError(403, "forbidden", f"you are not a member of tenant {requested!r}")
        return requested
    mine = sorted(tenants & set(ident.groups))
    if len(mine) == 1:
        return mine[0]
    if not mine:
        raise APIError(403, "no_tenant", "you are in no tenant (JupyterHub group); ask an admin to add you")
    raise APIError(400, "bad_request", f"you are in several tenants ({', '.join(mine)}): say which in 'tenant'")


def check_workload(handler, w: Workload):
    verdict = handler.ctx.queue.check(w)
    if not verdict.ok:
        raise APIError(VERDICT_STATUS.get(verdict.reason, 403), verdict.reason, verdict.message or verdict.reason)


def store_jobs(handler, tenant: str, rows: list[Job], max_queued) -> list[Job]:
    """Insert the jobs in one transaction, serialized per tenant (its row is write-locked first)."""
    db = handler.ctx.db
    with db.session() as s:
        # Taking the tenant row's write lock first serializes concurrent submissions of the tenant
        # (PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already holds the database's write lock).
        res = s.execute(update(TenantRow).where(TenantRow.name == tenant)
                        .values(submit_seq=TenantRow.submit_seq + 1))
        if res.rowcount != 1:
            raise APIError(400, "unknown_tenant", f"no tenant {tenant!r}")
        if max_queued is not None:
            queued = s.query(Job).filter(Job.tenant == tenant, Job.state == QUEUED).count()
            if queued + len(rows) > max_queued:
                raise APIError(403, "queue_full", f"tenant {tenant!r} may have {max_queued} queued jobs; "
                               f"{queued} are queued and this adds {len(rows)}")
        for row in rows:
            s.add(row)
        s.flush()
        for row in rows:
            s.add(JobEvent(job_id=row.id, at=row.created_at, from_state=None, to_state=QUEUED, attempt=0,
                           message=f"submitted by {handler.identity.name}"))
    handler.ctx.queue.wake()
    return rows


def build_jobs(handler, body: dict) -> tuple[list[Job], str, object]:
    allowed = {"notebook", "path", "parameters", "sweep", "profile", "tenant", "name", "priority", "timeout_s",
               "max_retries", "retry_on", "kernel_name", "expected_duration_s", "cwd"}
    unknown = set(body) - allowed
    if unknown:
        raise APIError(400, "bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
    nb, path = _read_notebook(handler, body)
    tenant = pick_tenant(handler, body.get("tenant"))
    slug = body.get("profile")
    profile = handler.ctx.offered_profile(slug, tenant)
    name = body.get("name")
    if name is None:
        name = k8s_name_from(path or (nb.metadata.get("name") or "job"))
    if not isinstance(name, str) or len(name) > 63 or not K8S_NAME.match(name):
        raise APIError(400, "bad_name", "'name' must be a valid Kubernetes name: lower-case letters, digits and "
                       "'-', starting and ending with a letter or digit, at most 63 characters")
    priority = body.get("priority", "normal")
    if priority not in PRIORITIES:
        raise APIError(400, "bad_request", f"'priority' must be one of {', '.join(PRIORITIES)}")
    timeout_s = _number(body, "timeout_s", None, 1, MAX_TIMEOUT_S)
    expected = _number(body, "expected_duration_s", None, 1, MAX_TIMEOUT_S)
    max_retries = _number(body, "max_retries", 0, 0, MAX_RETRIES, integer=True)
    retry_on = body.get("retry_on", list(DEFAULT_RETRY_ON))
    if not isinstance(retry_on, list) or any(c not in FAILURE_CLASSES or c == F_CANCELLED for c in retry_on):
        raise APIError(400, "bad_request", f"'retry_on' must be a list of: {', '.join(c for c in FAILURE_CLASSES if c != F_CANCELLED)}")
    cwd = body.get("cwd")
    if cwd is not None:
        raise APIError(400, "bad_request", "'cwd' is chosen by the service (the job's own directory)")
    kernel = _kernel_name(handler, body, nb)
    try:
        declared = inspect_parameters(nb)
    except Exception as e:  # noqa: BLE001
        raise APIError(400, "bad_notebook", f"cannot read the parameters cell: {e}") from None
    try:
        params = body.get("parameters", {})
        if body.get("sweep") is not None:
            combos = expand_sweep(declared, params if isinstance(params, dict) else {}, body["sweep"])
            if not isinstance(params, dict):
                raise ParameterError("parameters must be a JSON object")
        else:
            combos = [validate_parameters(declared, params)]
    except ParameterError as e:
        raise APIError(400, "bad_parameters", str(e)) from None
    request = profile.request
    w = Workload("job-new", tenant, handler.identity.name, "job", priority, request, 0.0, expected)
    check_workload(handler, w)
    now = utcnow()
    group = uuid.uuid4().hex if body.get("sweep") is not None else None
    import nbformat

    notebook_text = nbformat.writes(nb)
    rows = []
    for i, p in enumerate(combos):
        rows.append(Job(
            name=name if group is None else f"{name[:56].rstrip('-')}-{i}", user=handler.identity.name,
            tenant=tenant, profile=slug, priority=priority, state=QUEUED, group_id=group, notebook=notebook_text,
            notebook_path=path, parameters=p, kernel_name=kernel, timeout_s=timeout_s, max_retries=max_retries,
            retry_on=retry_on, expected_duration_s=expected, request=request.to_dict(), attempt=0,
            created_at=now, updated_at=now, cancel_requested=0, enqueued=0,
        ))
    t = handler.ctx.tenant(tenant)
    q = t.quota("any") if t is not None else None
    return rows, group, (q.max_queued_jobs if q is not None else None)


class JobsHandler(JobAccess, APIHandler):
    async def post(self):
        body = self.json_body()
        rows, group, max_queued = build_jobs(self, body)
        rows = store_jobs(self, rows[0].tenant, rows, max_queued)
        if group is None:
            self.set_header("Location", f"jobs/{rows[0].id}")
            return self.write_json(job_json(rows[0], self.ctx), 201)
        return self.write_json({"group_id": group, "jobs": [job_json(r, self.ctx) for r in rows]}, 201)

    async def get(self):
        limit = self.int_arg("limit", 50, 1, 500)
        before = self.int_arg("before", None, 1, 2**62)
        states = [s for s in self.get_query_arguments("state") for s in s.split(",") if s]
        for st in states:
            if st not in JOB_STATES:
                raise APIError(400, "bad_request", f"unknown state {st!r}; one of {', '.join(JOB_STATES)}")
        with self.ctx.db.read() as s:
            q = self.visible_filter(s.query(Job).with_entities(*JOB_LIST_COLUMNS))
            user, tenant, group = (self.get_query_argument(k, None) for k in ("user", "tenant", "group_id"))
            if user:
                q = q.filter(Job.user == user)
            if tenant:
                q = q.filter(Job.tenant == tenant)
            if group:
                q = q.filter(Job.group_id == group)
            if states:
                q = q.filter(Job.state.in_(states))
            if before:
                q = q.filter(Job.id < before)
            rows = q.order_by(Job.id.desc()).limit(limit + 1).all()
        more = len(rows) > limit
        rows = rows[:limit]
        self.write_json({"jobs": [job_json(r, self.ctx) for r in rows],
                         "next": f"before={rows[-1].id}" if more and rows else None})


# Columns for the list (everything but the notebook snapshot, which can be large).
JOB_LIST_COLUMNS = [c for c in Job.__table__.columns if c.name != "notebook"]


class JobHandler(JobAccess, APIHandler):
    async def get(self, job_id):
        with self.ctx.db.read() as s:
            row = self.get_job(s, job_id)
            out = job_json(row, self.ctx, detail=True)
        self.write_json(out)


class JobCancelHandler(JobAccess, APIHandler):
    async def post(self, job_id):
        with self.ctx.db.session() as s:
            row = self.get_job(s, job_id)
            if row.state in FINAL_STATES:
                raise APIError(409, "already_final", f"job {row.id} is already {row.state}")
            if row.state == QUEUED:
                transition(s, row.id, QUEUED, CANCELLED, message=f"cancelled by {self.identity.name}",
                           cancel_requested=1, finished_at=utcnow(), failure=failure(F_CANCELLED, "cancelled while queued"))
            else:
                s.execute(update(Job).where(Job.id == row.id, Job.state.in_(ACTIVE_STATES + (QUEUED,)))
                          .values(cancel_requested=1))
            s.flush()
            s.refresh(row)
            out = job_json(row, self.ctx)
        self.ctx.queue.wake()
        self.write_json(out, 202 if out["state"] != CANCELLED else 200)


class JobRerunHandler(JobAccess, APIHandler):
    async def post(self, job_id):
        with self.ctx.db.session() as s:
            old = self.get_job(s, job_id)
            body = {"notebook": json.loads(old.notebook), "parameters": old.parameters, "profile": old.profile,
                    "tenant": old.tenant, "name": old.name, "priority": old.priority, "timeout_s": old.timeout_s,
                    "max_retries": old.max_retries, "retry_on": old.retry_on, "kernel_name": old.kernel_name}
            owner = old.user
        if owner != self.identity.name:
            # A rerun runs as the job's owner (an admin reruns someone's job on their behalf).
            from .base import Identity

            self.identity = Identity(name=owner, groups=frozenset([body["tenant"]]))
        body = {k: v for k, v in body.items() if v is not None}
        rows, group, max_queued = build_jobs(self, body)
        rows = store_jobs(self, rows[0].tenant, rows, max_queued)
        self.write_json(job_json(rows[0], self.ctx), 201)


class JobOutputHandler(JobAccess, APIHandler):
    async def get(self, job_id):
        with self.ctx.db.read() as s:
            row = self.get_job(s, job_id)
            spec = job_spec(row)
            state = row.state
        text = await self.ctx.executor.read_output(spec) if spec.attempt else None
        if text is None:
            raise APIError(404, "no_output", f"job {spec.id} has no output yet (it is {state})")
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("X-Aistack-Job-State", state)
        self.finish(text)


class JobLogsHandler(JobAccess, APIHandler):
    follow_poll_s = 0.25
    follow_max_s = 6 * 3600

    async def get(self, job_id):
        follow = self.get_query_argument("follow", "0") in ("1", "true", "yes")
        offset = self.int_arg("offset", 0, 0, 2**62)
        with self.ctx.db.read() as s:
            row = self.get_job(s, job_id)
            spec = job_spec(row)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        data, offset = await self.ctx.executor.read_logs(spec, offset)
        if not follow:
            self.set_header("X-Aistack-Log-Offset", str(offset))
            return self.finish(data)
        self.write(data)
        await self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.follow_max_s
        while loop.time() < deadline and not self.request.connection.stream.closed():
            with self.ctx.db.read() as s:
                row = s.get(Job, spec.id)
                final = row.state in FINAL_STATES
                spec.attempt = row.attempt
            data, offset = await self.ctx.executor.read_logs(spec, offset)
            if data:
                self.write(data)
                await self.flush()
            elif final:
                break
            else:
                await asyncio.sleep(self.follow_poll_s)
        self.finish()


class InspectHandler(APIHandler):
    async def post(self):
        body = self.json_body()
        unknown = set(body) - {"notebook", "path"}
        if unknown:
            raise APIError(400, "bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
        nb, _ = _read_notebook(self, body)
        try:
            params = inspect_parameters(nb)
        except Exception as e:  # noqa: BLE001
            raise APIError(400, "bad_notebook", f"cannot read the parameters cell: {e}") from None
        self.write_json({"parameters": list(params.values()),
                         "kernel_name": (nb.metadata.get("kernelspec") or {}).get("name")})
