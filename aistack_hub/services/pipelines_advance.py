"""The leader's pass over active pipeline runs: follow each node's job, collect what it passes on, step the
state machine (job_runner.pipelines.dag), submit the next attempts as ordinary jobs.

State before side effects: a node goes ``waiting -> submitting`` (attempts + 1, committed) before its job is
submitted, then ``submitting -> queued`` with the job's id. A node left ``submitting`` by a crash is matched
to its job by the job's name (``<run name>-<run id>-<node>``, unique per run) and creation time, or
submitted again if none was made.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re

from job_runner.db import FINAL_STATES, Job, utcnow
from job_runner.db.pipelines import Notification, PipelineNode, PipelineRun
from job_runner.pipelines import Node, step
from job_runner.pipelines.spec import Pipeline
from job_runner.pipelines.values import output_files, render, reported_values

from .context import Identity
from .errors import DomainError
from .models import JobSubmit, parse

ADMIN = Identity(name="hub", kind="hub", admin=True)
STUCK_SUBMITTING_S = 30.0


def to_nodes(rows) -> dict:
    out = {}
    for r in rows:
        state = "queued" if r.state == "submitting" else r.state
        out[r.key] = Node(r.key, r.task, r.index, state, r.attempts, r.budget, r.message)
    return out


def write_nodes(rows, nodes: dict) -> None:
    for r in rows:
        n = nodes[r.key]
        if r.state != "submitting" or n.state != "queued":
            r.state = n.state
        r.budget, r.message = n.budget, n.message


async def submit_path_job(ctx, jobs, ident: Identity, fields: dict) -> dict:
    """Submit a job of a notebook in the owner's home, the notebook read and inspected in an I/O thread
    (a few milliseconds for a small notebook) rather than the worker processes, which a loaded machine may
    still be starting: a slot's job then goes in within a second of its time."""
    from . import notebooks

    path = fields["path"]
    if path.startswith("/") or ".." in path.split("/") or "\0" in path or not ctx.notebook_root:
        return await jobs.submit(ident, parse(JobSubmit, fields))
    root = os.path.realpath(ctx.notebook_root.format(user=ident.name))
    nb = await ctx.offload.io(notebooks.prepare_file, root, path, ctx.limits.max_notebook_bytes)
    rest = {k: v for k, v in fields.items() if k != "path"}
    return await jobs.submit(ident, parse(JobSubmit, {**rest, "notebook": nb, "notebook_path": path}))


def job_name(run: PipelineRun, key: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", f"{run.name}-{run.id}-{key}".lower()).strip("-")
    return base[:63].strip("-")


class PipelineAdvancer:
    def __init__(self, service, log):
        self.svc = service
        self.ctx = service.ctx
        self.log = log

    # ---------------------------------------------------------------------------- one pass
    async def run_once(self) -> int:
        """One pass over every running run; returns the jobs submitted."""
        ids = await self.ctx.offload.io(self._active_ids)
        budget = self.svc.settings.submit_per_pass
        submitted = 0
        for rid in ids:
            try:
                submitted += await self.advance(rid, budget - submitted)
            except Exception:  # noqa: BLE001 - one broken run does not stop the others
                self.log.exception("pipeline run %s: advancing failed", rid)
            if submitted >= budget:
                break
        return submitted

    def _active_ids(self) -> list:
        with self.ctx.db.read() as s:
            return [r for (r,) in s.query(PipelineRun.id).filter(PipelineRun.state == "running")
                    .order_by(PipelineRun.id).all()]

    async def advance(self, run_id: int, budget: int) -> int:
        starts, cancel_jobs, spec = await self.ctx.offload.io(self._step_db, run_id, budget)
        for job_id in cancel_jobs:
            try:
                await self.svc.jobs.cancel(ADMIN, str(job_id))
            except DomainError:
                pass  # already final
        for key, req_fields, owner in starts:
            await self._submit(run_id, key, req_fields, owner)
        return len(starts)

    # ---------------------------------------------------------------------- database step
    def _follow(self, s, run: PipelineRun, rows, p: Pipeline) -> None:
        """Node states from their jobs' states; what a succeeded node passes on."""
        job_ids = [r.job_id for r in rows if r.job_id and r.state in ("queued", "running")]
        jobs = {j.id: j for j in s.query(Job).filter(Job.id.in_(job_ids)).all()} if job_ids else {}
        now = utcnow()
        for r in rows:
            if r.state == "submitting" and r.started_at and (now - r.started_at).total_seconds() > STUCK_SUBMITTING_S:
                self._recover(s, run, r)
            j = jobs.get(r.job_id) if r.state in ("queued", "running") else None
            if j is None:
                continue
            if j.state not in FINAL_STATES:
                r.state = "running" if j.state in ("admitted", "running") else "queued"
                continue
            r.finished_at = j.finished_at or now
            if j.state == "succeeded":
                err = self._collect(run, r, p, j)
                r.state, r.failure, r.message = ("failed", {"kind": "pipeline", "message": err}, err) if err else (
                    "succeeded", None, None)
            elif j.state == "cancelled" and run.cancel_requested:
                r.state, r.message = "cancelled", "the run was cancelled"
            else:
                r.state, r.failure = "failed", j.failure
                r.message = (j.failure or {}).get("message") or f"job {j.id} {j.state}"

    def _collect(self, run: PipelineRun, r: PipelineNode, p: Pipeline, job: Job) -> str | None:
        t = p.tasks[r.task]
        item = t.fan_out["values"][r.index] if t.fan_out and r.index is not None else None
        r.files = output_files(t.outputs["files"], run.run_dir, item, r.index)
        home = self.svc.home(run.user)
        if home and os.path.isdir(home):
            for name, path in r.files.items():
                if not os.path.exists(os.path.join(home, path)):
                    return f"task {r.task!r} declared the output file {name!r} ({path}) but did not write it"
        if t.outputs["parameters"]:
            text = self.ctx.run_files.read_output(job.id, job.attempt) if self.ctx.run_files is not None else None
            try:
                values = reported_values(text or "")
            except ValueError as e:
                return str(e)
            missing = [n for n in t.outputs["parameters"] if n not in values]
            if missing:
                return (f"task {r.task!r} did not report {missing[0]!r} (call job_runner.pipelines.report("
                        f"{missing[0]}=...) in the notebook)")
            r.values = {n: values[n] for n in t.outputs["parameters"]}
        return None

    def _recover(self, s, run: PipelineRun, r: PipelineNode) -> None:
        j = (s.query(Job).filter(Job.name == job_name(run, r.key), Job.user == run.user,
                                 Job.created_at >= r.started_at - dt.timedelta(seconds=1))
             .order_by(Job.id.desc()).first())
        if j is not None and j.id not in (r.job_ids or []):
            r.job_id, r.job_ids, r.state = j.id, list(r.job_ids or []) + [j.id], "queued"
        else:  # never submitted: the attempt did not happen
            r.state, r.attempts = "waiting" if r.attempts <= 1 else "failed", max(0, r.attempts - 1)

    def _step_db(self, run_id: int, budget: int):
        with self.ctx.db.session() as s:
            run = s.get(PipelineRun, run_id)
            if run is None or run.state != "running":
                return [], [], None
            from .pipelines import _spec
            p = Pipeline.from_dict(_spec(run.spec))
            rows = s.query(PipelineNode).filter(PipelineNode.run_id == run.id).order_by(PipelineNode.position).all()
            self._follow(s, run, rows, p)
            nodes = to_nodes(rows)
            plan = step(p, nodes, cancelled=bool(run.cancel_requested))
            by_key = {r.key: r for r in rows}
            now = utcnow()
            for key, why in plan.skip.items():
                by_key[key].state, by_key[key].message = "skipped", why
            cancel_jobs = []
            if run.cancel_requested:
                cancel_jobs = [r.job_id for r in rows if r.state in ("queued", "running") and r.job_id]
            starts = []
            outputs = self._outputs(rows)
            for key in plan.start[:max(0, budget)]:
                r = by_key[key]
                t = p.tasks[r.task]
                ctx = {"run_dir": run.run_dir, "run_id": run.id, "outputs": outputs,
                       "item": t.fan_out["values"][r.index] if t.fan_out else None, "index": r.index}
                try:
                    params = {k: render(v, ctx) for k, v in t.parameters.items()}
                except (KeyError, IndexError) as e:
                    r.state, r.attempts, r.message = "failed", r.budget, f"a template could not be filled: {e}"
                    continue
                if t.fan_out:
                    params[t.fan_out["parameter"]] = ctx["item"]
                r.state, r.attempts, r.started_at, r.parameters = "submitting", r.attempts + 1, now, params
                r.finished_at, r.failure, r.message = None, None, None
                folder = run.spec.get("folder") or ""
                fields = {"path": os.path.join(folder, t.notebook) if folder else t.notebook, "profile": t.profile,
                          "tenant": run.tenant, "parameters": params, "name": job_name(run, key),
                          "priority": t.priority}
                if t.timeout_s:
                    fields["timeout_s"] = float(t.timeout_s)
                if t.kernel_name:
                    fields["kernel_name"] = t.kernel_name
                starts.append((key, fields, run.user))
            if not starts:
                plan = step(p, to_nodes(rows), cancelled=bool(run.cancel_requested))
                if plan.state != "running" and not plan.start:
                    self._finish(s, run, rows, plan.state)
            run.updated_at = now
            return starts, cancel_jobs, p

    def _outputs(self, rows) -> dict:
        out: dict = {}
        for r in rows:
            out.setdefault(r.task, []).append((r.index, {"files": r.files or {}, "parameters": r.values or {}}))
        return out

    def _finish(self, s, run: PipelineRun, rows, state: str) -> None:
        run.state, run.finished_at = state, utcnow()
        failed = [r for r in rows if r.state == "failed"]
        if state == "failed":
            run.message = f"task {failed[0].key!r} failed: {failed[0].message}" if failed else "failed"
            s.add(Notification(user=run.user, kind="pipeline_failed", link=f"pipelines/runs/{run.id}",
                               message=f"pipeline {run.name!r} (run {run.id}) failed: {run.message}"))
        self.log.info("pipeline run %s %s", run.id, state)

    # ------------------------------------------------------------------------------- submit
    async def _submit(self, run_id: int, key: str, fields: dict, owner: str) -> None:
        ident = Identity(name=owner, groups=frozenset([fields["tenant"]]))
        try:
            job = await submit_path_job(self.ctx, self.svc.jobs, ident, fields)
        except DomainError as e:
            if getattr(e, "code", "") == "queue_full":  # the tenant's queue is full: the node waits (next pass)
                await self.ctx.offload.io(self._unsubmit, run_id, key, None)
                return
            await self.ctx.offload.io(self._unsubmit, run_id, key, e.message)
            return
        await self.ctx.offload.io(self._submitted, run_id, key, job["id"])

    def _submitted(self, run_id: int, key: str, job_id: int) -> None:
        with self.ctx.db.session() as s:
            r = s.query(PipelineNode).filter(PipelineNode.run_id == run_id, PipelineNode.key == key).one()
            r.job_id, r.job_ids, r.state = job_id, list(r.job_ids or []) + [job_id], "queued"

    def _unsubmit(self, run_id: int, key: str, message: str | None) -> None:
        with self.ctx.db.session() as s:
            r = s.query(PipelineNode).filter(PipelineNode.run_id == run_id, PipelineNode.key == key).one()
            if message is None:
                r.attempts -= 1
                r.state = "waiting" if r.attempts == 0 else "failed"
            else:  # refused (bad parameters, a missing notebook): the node failed, no retry helps
                r.state, r.budget, r.message = "failed", r.attempts, message
                r.failure = {"kind": "submission", "message": message}
                r.finished_at = utcnow()


def dumps(x) -> str:
    return json.dumps(x, default=str)
