"""Notebook jobs: submit (one, or a sweep), list, show, cancel, rerun, inspect, output, logs.

Database work runs in the offload thread pool (``_*_db`` methods are synchronous and run there whole);
notebook work in its worker processes (``notebooks``). The async methods only sequence the two.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import re
import uuid
from urllib.parse import urlencode

from sqlalchemy import or_, update

from job_runner.db import ACTIVE_STATES, CANCELLED, FINAL_STATES, QUEUED, Job, JobEvent, TenantRow, utcnow
from job_runner.db.ops import iso, transition
from job_runner.executors.base import JobSpec
from job_runner.failures import CANCELLED as F_CANCELLED
from job_runner.failures import failure
from job_runner.params import ParameterError, SweepTooLarge, expand_sweep, validate_parameters
from job_runner.scheduling import Workload

from . import notebooks
from .context import Identity, ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound, TooLarge, TooMany, refused
from .limits import mib
from .models import InspectRequest, JobQuery, JobSubmit, parse
from .notebooks import PreparedNotebook
from .outputs import OutputPart, Buffer

# Columns of the list: the row's own (the notebook, up to 16 MiB, is in its own table and never read here).
LIST_COLUMNS = list(Job.__table__.columns)


def default_name(text: str) -> str:
    """A Kubernetes name from a notebook's path or name."""
    base = re.sub(r"[^a-z0-9-]+", "-", os.path.splitext(os.path.basename(text or "job"))[0].lower()).strip("-")
    return (base or "job")[:50].strip("-") or "job"


def utc_iso(epoch: float | None) -> str | None:
    if epoch is None or not math.isfinite(epoch):
        return None
    return iso(dt.datetime.fromtimestamp(epoch, dt.timezone.utc).replace(tzinfo=None))


def job_json(row, controller, detail: bool = False) -> dict:
    out = {
        "id": row.id, "name": row.name, "user": row.user, "tenant": row.tenant, "profile": row.profile,
        "priority": row.priority, "state": row.state, "group_id": row.group_id,
        "parameters": row.parameters or {}, "kernel_name": row.kernel_name, "notebook_path": row.notebook_path,
        "timeout_s": row.timeout_s, "expected_duration_s": row.expected_duration_s, "max_retries": row.max_retries, "retry_on": row.retry_on or [],
        "attempt": row.attempt, "progress": row.progress, "failure": row.failure,
        "cancel_requested": bool(row.cancel_requested),
        "created_at": iso(row.created_at), "admitted_at": iso(row.admitted_at), "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at), "updated_at": iso(row.updated_at),
        "queue_position": None, "estimated_start": None, "estimated_start_earliest": None,
        "estimated_start_latest": None, "pending_reason": None,
    }
    info = controller.pending_info(row.id) if row.state == QUEUED else None
    if info is not None:
        out.update(queue_position=info.position, pending_reason=info.reason,
                   estimated_start=utc_iso(info.estimated_start),
                   estimated_start_earliest=utc_iso(info.earliest_start), estimated_start_latest=utc_iso(info.latest_start))
    if detail:
        out["assignment"] = row.assignment
        out["events"] = [
            {"at": iso(e.at), "from": e.from_state, "to": e.to_state, "attempt": e.attempt, "message": e.message}
            for e in row.events
        ]
    return out


class JobService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._kernels: set | None = None
        # (tenant, kernel name) -> why the tenant may not use that kernel, or None (set by the environment
        # catalog, aistack_hub.services.storage.install; None: no catalog)
        self.environment_check = None
        # nbformat at construction (service start, before the loop runs: ~0.3 s): the first inspection after a
        # start then waits for no import; what remains to warm (the schema) runs in the background
        notebooks.preload()
        if ctx.validate_kernels:  # at start, in the background: the first submission finds the list ready
            ctx.offload.at_start(self._scan_kernels)

    def _scan_kernels(self) -> set:
        """The installed kernel names as jupyter_client's KernelSpecManager finds them (a folder with a
        kernel.json in a Jupyter path's kernels/, and ipykernel's python3), read without importing
        jupyter_client (a second of imports, which the first submission after a start waited for)."""
        from importlib.util import find_spec

        from jupyter_core.paths import jupyter_path

        names = set()
        for d in jupyter_path("kernels"):
            try:
                names.update(f.lower() for f in os.listdir(d) if os.path.isfile(os.path.join(d, f, "kernel.json")))
            except OSError:
                continue
        if find_spec("ipykernel") is not None:
            names.add("python3")
        self._kernels = names
        return names

    # ------------------------------------------------------------------------------------ reads
    def _visible(self, ident: Identity, q):
        if ident.is_admin:
            return q
        tenants = self.ctx.admin_tenants(ident)
        if tenants:
            return q.filter(or_(Job.user == ident.name, Job.tenant.in_(tenants)))
        return q.filter(Job.user == ident.name)

    def _row(self, s, ident: Identity, job_id: str) -> Job:
        return self.ctx.visible_row(s, ident, Job, job_id, "job")

    def _page_size(self, query: JobQuery) -> int:
        lim = self.ctx.limits
        if query.limit is None:
            return min(lim.default_page_size, lim.max_page_size)
        if query.limit > lim.max_page_size:
            raise Invalid(f"'limit' is at most {lim.max_page_size} (Limits.max_page_size); follow 'next' for "
                          "the following page", "page_too_large")
        return query.limit

    def _list_db(self, ident: Identity, query: JobQuery) -> dict:
        limit = self._page_size(query)
        with self.ctx.db.read() as s:
            q = self._visible(ident, s.query(Job).with_entities(*LIST_COLUMNS))
            for column, value in ((Job.user, query.user), (Job.tenant, query.tenant), (Job.group_id, query.group_id)):
                if value:
                    q = q.filter(column == value)
            if query.state:
                q = q.filter(Job.state.in_(query.state))
            if query.before:
                q = q.filter(Job.id < query.before)
            rows = q.order_by(Job.id.desc()).limit(limit + 1).all()
        more, rows = len(rows) > limit, rows[:limit]
        nxt = None
        if more and rows:  # the query of the next page: the same filters, older than this page's last
            args = [("limit", limit), ("before", rows[-1].id)] + [(k, v) for k, v in (
                ("user", query.user), ("tenant", query.tenant), ("group_id", query.group_id)) if v]
            args += [("state", ",".join(query.state))] if query.state else []
            nxt = urlencode(args)
        return {"jobs": [job_json(r, self.ctx.controller) for r in rows], "next": nxt}

    async def list(self, ident: Identity, query: JobQuery) -> dict:
        return await self.ctx.offload.io(self._list_db, ident, query)

    def _get_db(self, ident: Identity, job_id: str) -> dict:
        with self.ctx.db.read() as s:
            return job_json(self._row(s, ident, job_id), self.ctx.controller, detail=True)

    async def get(self, ident: Identity, job_id: str) -> dict:
        return await self.ctx.offload.io(self._get_db, ident, job_id)

    def _spec_db(self, ident: Identity, job_id: str) -> tuple[JobSpec, str]:
        with self.ctx.db.read() as s:
            row = self._row(s, ident, job_id)
            return JobSpec.from_row(row), row.state

    async def output(self, ident: Identity, job_id: str, first: int | None = None,
                     last: int | None = None, suffix: int | None = None) -> OutputPart:
        """The output notebook, whole or the bytes ``first``..``last`` (inclusive; ``last`` None: to the end;
        ``suffix``: the last N bytes), to be sent in chunks (``OutputPart.chunks``). Whole, it must be at most
        ``Limits.max_output_bytes``; a range is at most that long."""
        spec, state = await self.ctx.offload.io(self._spec_db, ident, job_id)
        part = await self.ctx.offload.io(self._open_output, spec) if spec.attempt else None
        if part is None and spec.attempt:  # an executor without run files here: its own read, in memory
            text = await self.ctx.executor.read_output(spec)
            part = None if text is None else OutputPart(Buffer(text.encode()), len(text.encode()))
        if part is None:
            raise NotFound(f"job {spec.id} has no output yet (it is {state})", "no_output")
        part.state = state
        try:
            part.select(first, last, suffix, self.ctx.limits.max_output_bytes)
        except BaseException:
            part.close()
            raise
        return part

    def _open_output(self, spec: JobSpec) -> OutputPart | None:
        store = self.ctx.run_files
        got = store.open_output(spec.id, spec.attempt) if store is not None else None
        return OutputPart(*got) if got else None

    def _state_db(self, job_id: int) -> tuple[str, int]:
        with self.ctx.db.read() as s:
            return s.query(Job.state, Job.attempt).filter(Job.id == job_id).one()

    async def logs(self, ident: Identity, job_id: str, offset: int, follow: bool, poll_s: float = 0.25,
                   idle_poll_s: float = 2.0):
        """Chunks of the job's log from ``offset``: (bytes, next offset). ``follow``: until the job ends (or
        ``Limits.max_log_follow_s``), with an empty chunk at each idle poll (the caller may stop there: a
        client gone). A user holds at most ``Limits.max_log_followers_per_user`` follows at once (429).

        An idle stream polls less and less often (``poll_s`` doubling up to ``idle_poll_s``), and reads the
        job's state only when the log has nothing new: 150 idle streams cost ~100 small reads a second in
        the thread pool, not 1,200 (they had pushed GET jobs to 5 s)."""
        lim = self.ctx.limits
        if follow and lim.max_log_followers_per_user <= 0:
            raise Forbidden("following logs is turned off here (Limits.max_log_followers_per_user = 0): "
                            "poll with ?offset= instead", "follow_disabled")
        spec, _ = await self.ctx.offload.io(self._spec_db, ident, job_id)
        if follow:
            held = self.ctx.followers.get(ident.name, 0)
            if held >= lim.max_log_followers_per_user:
                raise TooMany(f"you follow {held} logs already, the most one user may (Limits.max_log_followers_"
                              "per_user); close one, or poll with ?offset= instead", "too_many_followers")
            self.ctx.followers[ident.name] = held + 1
        try:
            data, offset = await self.ctx.executor.read_logs(spec, offset)
            yield data, offset
            if not follow:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + lim.max_log_follow_s
            wait = poll_s
            while loop.time() < deadline:
                data, offset = await self.ctx.executor.read_logs(spec, offset)
                if not data:
                    state, attempt = await self.ctx.offload.io(self._state_db, spec.id)
                    if attempt != spec.attempt:
                        spec.attempt = attempt
                        continue
                    if state in FINAL_STATES:
                        data, offset = await self.ctx.executor.read_logs(spec, offset)  # the last words
                        if not data:
                            return
                yield data, offset
                if data:
                    wait = poll_s
                else:
                    await asyncio.sleep(wait)
                    wait = min(idle_poll_s, wait * 2)
        finally:
            if follow:
                left = self.ctx.followers.get(ident.name, 1) - 1
                if left > 0:
                    self.ctx.followers[ident.name] = left
                else:
                    self.ctx.followers.pop(ident.name, None)

    # ---------------------------------------------------------------------------------- submit
    async def _notebook(self, ident: Identity, req: InspectRequest | JobSubmit) -> PreparedNotebook:
        if req.notebook is not None:
            return req.notebook
        root_tpl = self.ctx.notebook_root
        if not root_tpl:
            raise Invalid("this deployment takes notebook content, not paths: send 'notebook'", "path_unsupported")
        root = os.path.realpath(root_tpl.format(user=ident.name))
        if req.path.startswith("/") or ".." in req.path.split("/") or "\0" in req.path:
            raise Invalid("the path must stay inside your home directory", "bad_path")
        # opened once and checked on the opened file (notebooks.prepare_file): no check-then-open race
        return await self.ctx.offload.cpu(notebooks.prepare_file, root, req.path, self.ctx.limits.max_notebook_bytes)

    async def inspect(self, ident: Identity, req: InspectRequest) -> dict:
        nb = await self._notebook(ident, req)
        return {"parameters": list(nb.parameters.values()), "kernel_name": nb.kernel_name}

    async def submit(self, ident: Identity, req: JobSubmit) -> dict:
        """One job, or a sweep (``{group_id, jobs}``)."""
        nb = await self._notebook(ident, req)
        return await self.ctx.offload.io(self._submit_db, ident, req, nb)

    def _kernel(self, req: JobSubmit, nb: PreparedNotebook) -> str | None:
        name = req.kernel_name or nb.kernel_name
        if name and self.ctx.validate_kernels:
            if self._kernels is None or name not in self._kernels:
                # a directory scan: cached, and rescanned only for a name not seen yet (a new kernel)
                self._scan_kernels()
            if name not in self._kernels:
                raise Invalid(f"no kernel {name!r} is installed here", "unknown_kernel")
        return name

    def _check_sizes(self, req: JobSubmit) -> None:
        """Parameters and the sweep grid within ``Limits.max_parameters_bytes`` (each job row stores its
        parameters; its notebook is stored once for all, by content)."""
        limit = self.ctx.limits.max_parameters_bytes
        for field, value in (("parameters", req.parameters), ("sweep", req.sweep)):
            try:
                size = len(json.dumps(value, separators=(",", ":")).encode()) if value is not None else 0
            except (TypeError, ValueError, RecursionError):
                raise Invalid(f"'{field}' must be JSON values", "bad_parameters") from None
            if size > limit:
                raise TooLarge(f"'{field}' is too large ({mib(size)} > {mib(limit)}, Limits.max_parameters_bytes)",
                               "parameters_too_large")

    def _submit_db(self, ident: Identity, req: JobSubmit, nb: PreparedNotebook) -> dict:
        ctx = self.ctx
        tenant = ctx.pick_tenant(ident, req.tenant)
        profile = ctx.offered_profile(req.profile, tenant)
        name = req.name or default_name(req.path or nb.name or "job")
        kernel = self._kernel(req, nb)
        refusal = self.environment_check and self.environment_check(tenant, kernel)
        if refusal:
            raise Forbidden(refusal, "environment_not_offered")
        self._check_sizes(req)
        try:
            if req.sweep is not None:
                if not isinstance(req.parameters, dict):
                    raise ParameterError("parameters must be a JSON object")
                combos = expand_sweep(nb.parameters, req.parameters, req.sweep, ctx.limits.max_sweep_jobs)
            else:
                combos = [validate_parameters(nb.parameters, req.parameters)]
        except SweepTooLarge as e:
            raise Invalid(str(e), "sweep_too_large") from None
        except ParameterError as e:
            raise Invalid(str(e), "bad_parameters") from None
        w = Workload("job-new", tenant, ident.name, "job", req.priority, profile.request, 0.0, req.expected_duration_s)
        t = ctx.tenant(tenant)  # priority grants as the database has them now (docs/admin.md)
        if t is not None and t.grant_refusal(req.priority, ident.name):
            raise Forbidden(t.grant_refusal(req.priority, ident.name))
        verdict = ctx.controller.check(w)
        if not verdict.ok:
            raise refused(verdict)
        now = utcnow()
        group = uuid.uuid4().hex if req.sweep is not None else None
        rows = [Job(
            name=name if group is None else f"{name[:56].rstrip('-')}-{i}", user=ident.name, tenant=tenant,
            profile=req.profile, priority=req.priority, state=QUEUED, group_id=group, notebook=nb.text,
            notebook_path=req.path or req.notebook_path, parameters=p, kernel_name=kernel, timeout_s=req.timeout_s,
            max_retries=req.max_retries, retry_on=list(req.retry_on), expected_duration_s=req.expected_duration_s,
            request=profile.request.to_dict(), attempt=0, created_at=now, updated_at=now, cancel_requested=0,
            enqueued=0,
        ) for i, p in enumerate(combos)]
        t = ctx.tenant(tenant)
        quota = t.quota("any") if t is not None else None
        with ctx.db.session() as s:
            # The tenant row's write lock first serializes concurrent submissions of the tenant (PostgreSQL
            # row lock; SQLite's BEGIN IMMEDIATE already holds the database's write lock).
            res = s.execute(update(TenantRow).where(TenantRow.name == tenant)
                            .values(submit_seq=TenantRow.submit_seq + 1))
            if res.rowcount != 1:
                raise Invalid(f"no tenant {tenant!r}", "unknown_tenant")
            max_queued = quota.max_queued_jobs if quota is not None else None
            if max_queued is not None:
                queued = s.query(Job).filter(Job.tenant == tenant, Job.state == QUEUED).count()
                if queued + len(rows) > max_queued:
                    raise Forbidden(f"tenant {tenant!r} may have {max_queued} queued jobs; {queued} are queued "
                                    f"and this adds {len(rows)}", "queue_full")
            s.add_all(rows)
            s.flush()
            s.add_all([JobEvent(job_id=r.id, at=now, from_state=None, to_state=QUEUED, attempt=0,
                                message=f"submitted by {ident.name}") for r in rows])
            s.flush()
            jobs = [job_json(r, ctx.controller) for r in rows]
        ctx.controller.wake()
        return jobs[0] if group is None else {"group_id": group, "jobs": jobs}

    # ------------------------------------------------------------------------- cancel, rerun
    def _cancel_db(self, ident: Identity, job_id: str) -> dict:
        with self.ctx.db.session() as s:
            row = self._row(s, ident, job_id)
            if row.state in FINAL_STATES:
                raise Conflict(f"job {row.id} is already {row.state}", "already_final")
            if row.state == QUEUED:
                transition(s, row.id, QUEUED, CANCELLED, message=f"cancelled by {ident.name}", cancel_requested=1,
                           finished_at=utcnow(), failure=failure(F_CANCELLED, "cancelled while queued"))
            else:
                s.execute(update(Job).where(Job.id == row.id, Job.state.in_(ACTIVE_STATES + (QUEUED,)))
                          .values(cancel_requested=1))
            s.flush()
            s.refresh(row)
            out = job_json(row, self.ctx.controller)
        self.ctx.controller.wake()
        return out

    async def cancel(self, ident: Identity, job_id: str) -> dict:
        """The job, cancelled (queued) or with its cancel requested (running: the loop stops it)."""
        return await self.ctx.offload.io(self._cancel_db, ident, job_id)

    def _rerun_source_db(self, ident: Identity, job_id: str) -> tuple[str, dict, str]:
        with self.ctx.db.read() as s:
            old = self._row(s, ident, job_id)
            fields = {"parameters": old.parameters, "profile": old.profile, "tenant": old.tenant, "name": old.name,
                      "priority": old.priority, "timeout_s": old.timeout_s, "max_retries": old.max_retries,
                      "retry_on": old.retry_on, "kernel_name": old.kernel_name}
            return old.notebook, {k: v for k, v in fields.items() if v is not None}, old.user

    async def rerun(self, ident: Identity, job_id: str) -> dict:
        """The same job again, as its owner (an admin reruns someone's job on their behalf)."""
        text, fields, owner = await self.ctx.offload.io(self._rerun_source_db, ident, job_id)
        nb = await self.ctx.offload.cpu(notebooks.prepare_text, text)
        if owner != ident.name:
            ident = Identity(name=owner, groups=frozenset([fields["tenant"]]))
        req = parse(JobSubmit, {**fields, "notebook": nb})
        return await self.ctx.offload.io(self._submit_db, ident, req, nb)
