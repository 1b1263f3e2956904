"""Pipelines (issue 14): create a run from a pipeline file, list and show runs, retry a task, cancel.

The run's nodes are advanced by ``PipelineAdvancer`` (pipelines_advance.py) in the leader's loop; every
task attempt is an ordinary job submitted through ``JobService`` (quotas, fair share, failure reasons,
progress). docs/pipelines.md.
"""
from __future__ import annotations

import json
import os
import posixpath

from sqlalchemy import update
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from job_runner.db import utcnow
from job_runner.db.ops import iso
from job_runner.db.pipelines import Notification, PipelineNode, PipelineRun
from job_runner.pipelines import SCHEMA_PATH, SpecError, expand, parse_pipeline, retry
from job_runner.pipelines.spec import Pipeline

from .context import Identity, ServiceContext
from .errors import Conflict, Invalid, NotFound

RUN_FINAL = ("succeeded", "failed", "cancelled")
RUN_STATES = ("running", *RUN_FINAL)  # job_runner.pipelines.dag's RUN_*
SOURCE_FIELDS = ("spec", "path")  # a pipeline file: its text, or its path in the user's home
RUN_FIELDS = (*SOURCE_FIELDS, "tenant")  # POST pipelines/runs


def check_fields(body: dict, allowed: tuple) -> None:
    """Unknown fields are refused (a misspelt one was silently ignored; ``schedule_id``, which only a
    schedule's fire may set, was taken from the body and a non-integer one was a 500)."""
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise Invalid(f"unknown fields: {', '.join(extra)} (known: {', '.join(allowed)})")


def tenant_field(body: dict) -> str | None:
    """The body's ``tenant``: a name or absent (an object there was a 500 in ``pick_tenant``)."""
    tenant = body.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise Invalid("'tenant' is a tenant's name")
    return tenant


class SpecInvalid(Invalid):
    """A bad pipeline file: the API answers 400 with the ``line`` at fault."""

    def __init__(self, e: SpecError):
        super().__init__(e.args[0], e.code)
        self.line = e.line


class PipelineSettings(LoggingConfigurable):
    """Knobs of pipelines (``PipelineSettings`` section of the service config)."""

    tick_interval_s = Float(0.5, help="Seconds between passes of the leader over active pipeline runs and "
                            "schedules (a new run or a retry wakes it at once on the leader).").tag(config=True)
    max_tasks = Integer(200, help="Tasks in one pipeline file at most.").tag(config=True)
    max_nodes = Integer(2000, help="Nodes (tasks times fan-out values) in one run at most.").tag(config=True)
    max_spec_bytes = Integer(256 * 1024, help="Largest pipeline file (bytes).").tag(config=True)
    max_active_runs_per_user = Integer(20, help="Runs a user may have running at once.").tag(config=True)
    submit_per_pass = Integer(100, help="Jobs one pass submits at most (over all runs): a 1,000-value fan-out "
                              "does not hold the loop; the rest go in the next passes.").tag(config=True)


def node_json(n: PipelineNode) -> dict:
    return {"key": n.key, "task": n.task, "index": n.index, "state": n.state, "attempts": n.attempts,
            "budget": n.budget, "job_id": n.job_id, "job_ids": list(n.job_ids or []), "parameters": n.parameters,
            "values": n.values or {}, "files": n.files or {}, "failure": n.failure, "message": n.message,
            "started_at": iso(n.started_at), "finished_at": iso(n.finished_at)}


def run_json(r: PipelineRun, nodes=None) -> dict:
    out = {"id": r.id, "name": r.name, "user": r.user, "tenant": r.tenant, "state": r.state,
           "source_path": r.source_path, "run_dir": r.run_dir, "schedule_id": r.schedule_id,
           "cancel_requested": bool(r.cancel_requested), "message": r.message, "created_at": iso(r.created_at),
           "updated_at": iso(r.updated_at), "finished_at": iso(r.finished_at)}
    if nodes is not None:
        spec = r.spec
        out["tasks"] = [{"name": t["name"], "depends": t["depends"], "profile": t["profile"],
                         "notebook": t["notebook"], "fan_out": t["fan_out"], "line": t["line"]} for t in spec["tasks"]]
        out["nodes"] = [node_json(n) for n in sorted(nodes, key=lambda n: n.position)]
        out["counts"] = {s: sum(1 for n in nodes if n.state == s) for s in {n.state for n in nodes}}
    return out


class PipelineService:
    def __init__(self, ctx: ServiceContext, jobs, settings: PipelineSettings | None = None):
        self.ctx = ctx
        self.jobs = jobs
        self.settings = settings or PipelineSettings()
        self.wake = lambda: None  # set by the service: wakes the leader's loop

    # ------------------------------------------------------------------------------- parsing
    def parse(self, text: str, tenant: str | None = None) -> Pipeline:
        try:
            size = len(text.encode())
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON body): not text (was a 500)
            raise Invalid("the pipeline file is not valid Unicode text", "bad_spec") from None
        if size > self.settings.max_spec_bytes:
            raise Invalid(f"the pipeline file is larger than {self.settings.max_spec_bytes} bytes "
                          "(PipelineSettings.max_spec_bytes)", "too_large")
        try:
            p = parse_pipeline(text, self.settings.max_tasks)
        except SpecError as e:
            raise SpecInvalid(e) from None
        nodes = sum(len(t.fan_out["values"]) if t.fan_out else 1 for t in p.tasks.values())
        if nodes > self.settings.max_nodes:
            raise SpecInvalid(SpecError(f"the run would have {nodes} nodes; at most {self.settings.max_nodes} "
                                        "(PipelineSettings.max_nodes)", 1, "too_large"))
        for t in p.tasks.values():
            try:
                profile = self.ctx.deployment.profiles.get(t.profile)
            except KeyError:
                raise SpecInvalid(SpecError(f"task {t.name!r}: no profile {t.profile!r}",
                                            t.lines.get("profile") or t.line, "unknown_profile")) from None
            if tenant is not None and not profile.offered_to(tenant):
                raise SpecInvalid(SpecError(f"task {t.name!r}: profile {t.profile!r} is not offered to tenant "
                                            f"{tenant!r}", t.lines.get("profile") or t.line, "unknown_profile"))
        return p

    def _text(self, body: dict, ident: Identity) -> tuple[str, str | None]:
        spec, path = body.get("spec"), body.get("path")
        if spec is None and path is None:
            raise Invalid("send 'spec' (the pipeline file's text, or the same as JSON) or 'path' (of a "
                          "*.pipeline.yaml in your home)")
        if path is not None and (not isinstance(path, str) or path.startswith("/") or ".." in path.split("/")
                                 or "\0" in path):
            raise Invalid("'path' must be a relative path inside your home", "bad_path")
        if spec is None:
            root = self.home(ident.name)
            if not root:
                raise Invalid("this deployment takes pipeline text, not paths: send 'spec'", "path_unsupported")
            try:
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    spec = f.read(self.settings.max_spec_bytes + 1)
            except (OSError, UnicodeDecodeError) as e:
                raise Invalid(f"cannot read {path!r} in your home: {e.__class__.__name__}", "bad_path") from None
        if isinstance(spec, dict):
            spec = json.dumps(spec, indent=1)
        if not isinstance(spec, str):
            raise Invalid("'spec' is the pipeline file's text (YAML) or a JSON object")
        return spec, path

    def home(self, user: str) -> str:
        tpl = self.ctx.notebook_root
        return os.path.realpath(tpl.format(user=user)) if tpl else ""

    # --------------------------------------------------------------------------------- writes
    def _create_db(self, ident: Identity, body: dict, schedule_id: int | None = None) -> dict:
        check_fields(body, RUN_FIELDS)
        text, path = self._text(body, ident)
        tenant = self.ctx.pick_tenant(ident, tenant_field(body))
        p = self.parse(text, tenant)
        folder = posixpath.dirname(path) if path else ""
        with self.ctx.db.session() as s:
            active = s.query(PipelineRun).filter(PipelineRun.user == ident.name, PipelineRun.state == "running").count()
            if active >= self.settings.max_active_runs_per_user:
                raise Conflict(f"you have {active} pipeline runs running, the most one user may "
                               "(PipelineSettings.max_active_runs_per_user)", "too_many_runs")
            now = utcnow()
            run = PipelineRun(name=p.name, user=ident.name, tenant=tenant, state="running", spec=p.to_dict(),
                              spec_text=text, source_path=path, run_dir="", schedule_id=schedule_id,
                              cancel_requested=0, created_at=now, updated_at=now)
            run.spec["folder"] = folder
            s.add(run)
            s.flush()
            run.run_dir = posixpath.normpath(posixpath.join(folder, p.run_dir, f"{p.name}-{run.id}"))
            nodes = [PipelineNode(run_id=run.id, key=n.key, task=n.task, index=n.index, position=i, state=n.state,
                                  attempts=0, budget=n.budget, job_ids=[], values={}, files={})
                     for i, n in enumerate(expand(p))]
            s.add_all(nodes)
            s.flush()
            out = run_json(run, nodes)
        self.wake()
        return out

    async def create(self, ident: Identity, body: dict, schedule_id: int | None = None) -> dict:
        """A run of the pipeline file in ``body`` (RUN_FIELDS); ``schedule_id``: the schedule that fired it."""
        return await self.ctx.offload.io(self._create_db, ident, body, schedule_id)

    async def validate(self, ident: Identity, body: dict) -> dict:
        def work():
            check_fields(body, SOURCE_FIELDS)
            text, _ = self._text(body, ident)
            p = self.parse(text)
            return {"ok": True, "name": p.name, "tasks": [
                {"name": t.name, "depends": t.depends, "line": t.line, "profile": t.profile, "notebook": t.notebook,
                 "fan_out": len(t.fan_out["values"]) if t.fan_out else None} for t in p.tasks.values()]}
        return await self.ctx.offload.io(work)

    def _run(self, s, ident: Identity, run_id: str) -> PipelineRun:
        return self.ctx.visible_row(s, ident, PipelineRun, run_id, "pipeline run")

    def _retry_db(self, ident: Identity, run_id: str, key: str) -> dict:
        with self.ctx.db.session() as s:
            run = self._run(s, ident, run_id)
            if run.cancel_requested:
                raise Conflict(f"pipeline run {run.id} was cancelled", "cancelled")
            rows = s.query(PipelineNode).filter(PipelineNode.run_id == run.id).all()
            if not any(n.key == key or n.task == key for n in rows):
                raise NotFound(f"pipeline run {run.id} has no task {key!r}")
            from .pipelines_advance import to_nodes, write_nodes
            nodes = to_nodes(rows)
            done = retry(Pipeline.from_dict(_spec(run.spec)), nodes, key)
            if not done:
                raise Conflict(f"task {key!r} of run {run.id} has not failed (retry a failed task)", "not_failed")
            write_nodes(rows, nodes)
            run.state, run.finished_at, run.message, run.updated_at = "running", None, None, utcnow()
            s.flush()
            out = run_json(run, rows)
            out["retried"] = done
        self.wake()
        return out

    async def retry(self, ident: Identity, run_id: str, key: str) -> dict:
        return await self.ctx.offload.io(self._retry_db, ident, run_id, key)

    def _cancel_db(self, ident: Identity, run_id: str) -> dict:
        with self.ctx.db.session() as s:
            run = self._run(s, ident, run_id)
            if run.state in RUN_FINAL:
                raise Conflict(f"pipeline run {run.id} is already {run.state}", "already_final")
            s.execute(update(PipelineRun).where(PipelineRun.id == run.id).values(cancel_requested=1, updated_at=utcnow()))
            s.flush()
            s.refresh(run)
            out = run_json(run)
        self.wake()
        return out

    async def cancel(self, ident: Identity, run_id: str) -> dict:
        return await self.ctx.offload.io(self._cancel_db, ident, run_id)

    # ---------------------------------------------------------------------------------- reads
    def _get_db(self, ident: Identity, run_id: str) -> dict:
        with self.ctx.db.read() as s:
            run = self._run(s, ident, run_id)
            return run_json(run, s.query(PipelineNode).filter(PipelineNode.run_id == run.id).all())

    async def get(self, ident: Identity, run_id: str) -> dict:
        return await self.ctx.offload.io(self._get_db, ident, run_id)

    def _list_db(self, ident: Identity, limit: int | None, before: int | None, state: str | None) -> dict:
        lim = self.ctx.limits
        limit = min(limit or lim.default_page_size, lim.max_page_size)
        with self.ctx.db.read() as s:
            q = s.query(PipelineRun)
            if not ident.is_admin:
                tenants = self.ctx.admin_tenants(ident)
                q = q.filter((PipelineRun.user == ident.name) | PipelineRun.tenant.in_(tenants or [""]))
            if before:
                q = q.filter(PipelineRun.id < before)
            if state:
                q = q.filter(PipelineRun.state == state)
            rows = q.order_by(PipelineRun.id.desc()).limit(limit + 1).all()
        more, rows = len(rows) > limit, rows[:limit]
        return {"runs": [run_json(r) for r in rows],
                "next": f"limit={limit}&before={rows[-1].id}" if more and rows else None}

    async def list(self, ident: Identity, limit=None, before=None, state=None) -> dict:
        if state is not None and state not in RUN_STATES:  # a filter that can match nothing is a mistake
            raise Invalid(f"'state' is one of {', '.join(RUN_STATES)}", "bad_state")
        return await self.ctx.offload.io(self._list_db, ident, limit, before, state)

    def schema(self) -> dict:
        with open(SCHEMA_PATH) as f:
            return json.load(f)

    # -------------------------------------------------------------------------- notifications
    def _notifications_db(self, ident: Identity, after: int, limit: int) -> dict:
        with self.ctx.db.read() as s:
            rows = (s.query(Notification).filter(Notification.user == ident.name, Notification.id > after)
                    .order_by(Notification.id).limit(limit).all())
            return {"notifications": [{"id": n.id, "kind": n.kind, "message": n.message, "link": n.link,
                                       "created_at": iso(n.created_at)} for n in rows]}

    async def notifications(self, ident: Identity, after: int = 0, limit: int = 50) -> dict:
        return await self.ctx.offload.io(self._notifications_db, ident, after, min(limit, 200))


def _spec(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "folder"}
