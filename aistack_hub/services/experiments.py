"""Experiments (issue 13): create, list, show, stop/resume/add a trial, cancel; the pass that ingests
metrics and drives the studies (job_runner.experiments); the pod's metrics upload. docs/experiments.md."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from pydantic import Field
from sqlalchemy import select, update

from job_runner.db import FINAL_STATES, QUEUED, Job, store_notebooks, utcnow
from job_runner.db.experiments import EXP_CANCELLED, EXP_FINAL, EXP_RUNNING, Experiment, Trial
from job_runner.db.ops import iso, transition
from job_runner.experiments import ingest, marker
from job_runner.experiments.collect import Collector
from job_runner.experiments import space as sp
from job_runner.experiments.driver import ExperimentDriver, Refused, cancel_jobs
from job_runner.experiments.study import STRATEGIES, rungs
from job_runner.experiments.views import best, last_value, trial_state
from job_runner.params import ParameterError, validate_parameters

from . import notebooks
from .context import Identity
from .errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from .experiment_settings import ExperimentSettings
from .models import JobSubmit, NotebookSource, Priority, parse, row_id

log = logging.getLogger(__name__)


class ExperimentSubmit(NotebookSource):
    profile: str
    tenant: str | None = None
    name: str | None = None
    priority: Priority = "normal"
    kernel_name: str | None = None
    notebook_path: str | None = None
    timeout_s: float | None = None
    parameters: dict = Field(default_factory=dict)  # fixed notebook parameters of every trial
    space: dict
    objective: dict
    strategy: Literal[STRATEGIES] = "asha"
    sampler: Literal["grid", "random", "tpe"] | None = None
    max_trials: int | None = None
    parallelism: int = 2
    budget: dict | None = None  # {"parameter": name, "max": N}
    pruner: dict | None = None  # {"min_resource", "reduction_factor", ...}
    metrics_collector: Literal["report", "stdout"] = "report"
    metrics: list[str] = Field(default_factory=list)  # stdout: the names to read besides the objective
    seed: int = 0


class ExperimentService:
    def __init__(self, ctx, jobs, pods, settings: ExperimentSettings | None = None):
        self.ctx, self.jobs, self.pods = ctx, jobs, pods
        self.settings = settings or ExperimentSettings()
        self.driver = ExperimentDriver(ctx.db, self._submit_trial, ctx.controller.wake, self._write_stop)
        self._notebooks: dict[str, object] = {}
        self.collector = Collector(ctx.db, ctx.executor, ctx.offload.io, self.settings.ingest_after_end_s)

    # ------------------------------------------------------------------ create
    async def create(self, ident: Identity, req: ExperimentSubmit) -> dict:
        nb = await self.jobs._notebook(ident, req)
        return await self.ctx.offload.io(self._create_db, ident, req, nb)

    def _spec(self, req: ExperimentSubmit, nb) -> dict:
        lim = self.settings
        known = set(nb.parameters)
        budget = req.budget
        if budget is not None:
            if set(budget) - {"parameter", "max"} or not isinstance(budget.get("max"), int) or budget["max"] < 1:
                raise Invalid("'budget' is {\"parameter\": name, \"max\": a positive integer}", "bad_budget")
            if budget.get("parameter") is not None and budget["parameter"] not in known:
                raise Invalid(f"unknown budget parameter {budget['parameter']!r}: the notebook's parameters cell "
                              f"has {', '.join(sorted(known)) or 'none'}", "bad_space")
        try:
            dists = sp.distributions(req.space, known, (budget or {}).get("parameter"))
        except sp.SpaceError as e:
            raise Invalid(str(e), "bad_space") from None
        obj = req.objective
        if not isinstance(obj.get("metric"), str) or not obj["metric"] or obj.get("mode", "max") not in ("max", "min") \
                or set(obj) - {"metric", "mode"}:
            raise Invalid("'objective' is {\"metric\": name, \"mode\": \"max\"|\"min\"}", "bad_objective")
        if req.strategy in ("asha", "hyperband", "median") and budget is None:
            raise Invalid(f"strategy {req.strategy!r} stops trials early: give 'budget' {{parameter, max}}",
                          "bad_budget")
        size = None
        try:
            size = sp.grid_size(sp.grid(dists))
        except sp.SpaceError as e:
            if req.strategy == "grid" or req.sampler == "grid":
                raise Invalid(str(e), "bad_space") from None
        max_trials = req.max_trials if req.max_trials is not None else (size if size is not None else 20)
        if req.strategy == "grid" and size is not None:
            max_trials = min(max_trials, size)
        if max_trials < 1 or max_trials > lim.max_trials:
            raise Invalid(f"'max_trials' is 1..{lim.max_trials} (ExperimentSettings.max_trials); this asks "
                          f"{max_trials}", "too_many_trials")
        if not 1 <= req.parallelism <= lim.max_parallelism:
            raise Invalid(f"'parallelism' is 1..{lim.max_parallelism} (ExperimentSettings.max_parallelism)",
                          "bad_parallelism")
        try:
            fixed = validate_parameters(nb.parameters, dict(req.parameters)) if req.parameters else {}
        except ParameterError as e:
            raise Invalid(str(e), "bad_parameters") from None
        clash = set(fixed) & set(req.space)
        if clash:
            raise Invalid(f"parameters both fixed and searched: {', '.join(sorted(clash))}", "bad_space")
        spec = {"space": req.space, "objective": {"metric": obj["metric"], "mode": obj.get("mode", "max")},
                "strategy": req.strategy, "sampler": req.sampler, "max_trials": max_trials,
                "parallelism": req.parallelism, "budget": budget, "pruner": req.pruner or {},
                "metrics_collector": req.metrics_collector, "metrics": list(req.metrics), "seed": req.seed,
                "parameters": fixed, "timeout_s": req.timeout_s}
        spec["rungs"] = rungs(spec) if req.strategy == "asha" else []
        return spec

    def _create_db(self, ident: Identity, req: ExperimentSubmit, nb) -> dict:
        ctx = self.ctx
        tenant = ctx.pick_tenant(ident, req.tenant)
        ctx.offered_profile(req.profile, tenant)
        t = ctx.tenant(tenant)
        if t is not None and t.grant_refusal(req.priority, ident.name):
            raise Forbidden(t.grant_refusal(req.priority, ident.name))
        spec = self._spec(req, nb)
        from .jobs import default_name
        name = req.name or default_name(req.path or nb.name or "experiment")
        now = utcnow()
        with ctx.db.session() as s:
            sha = store_notebooks(s, [nb.text])[0]
            row = Experiment(name=name[:63], user=ident.name, tenant=tenant, profile=req.profile,
                             priority=req.priority, state=EXP_RUNNING, spec=spec, notebook_sha=sha,
                             notebook_path=req.path or req.notebook_path, kernel_name=req.kernel_name or nb.kernel_name,
                             created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            exp_id = row.id
        self._notebooks[sha] = nb
        return self._get_db(ident, str(exp_id))

    # ------------------------------------------------------------------ trials as jobs
    def _submit_trial(self, exp: Experiment, params: dict, number: int) -> int:
        """The service's ordinary submission, as the experiment's owner (quota, queue, priority grants)."""
        nb = self._notebooks.get(exp.notebook_sha)
        if nb is None:
            from job_runner.db import Notebook
            with self.ctx.db.read() as s:
                text = s.get(Notebook, exp.notebook_sha).text
            nb = self._notebooks[exp.notebook_sha] = notebooks.prepare_text(text)
        owner = Identity(name=exp.user, groups=frozenset([exp.tenant]))
        req = parse(JobSubmit, {"notebook": nb, "profile": exp.profile, "tenant": exp.tenant,
                                "name": f"{exp.name[:50].rstrip('-')}-t{number}",
                                "priority": exp.priority, "parameters": params, "kernel_name": exp.kernel_name,
                                "notebook_path": exp.notebook_path, "timeout_s": exp.spec.get("timeout_s")})
        try:
            out = self.jobs._submit_db(owner, req, nb)
        except DomainError as e:
            raise Refused(e.message) from None
        with self.ctx.db.session() as s:
            s.execute(update(Job).where(Job.id == out["id"]).values(group_id=f"experiment-{exp.id}"))
        return out["id"]

    # ------------------------------------------------------------------ reads
    def _exp(self, s, ident: Identity, exp_id: str) -> Experiment:
        return self.ctx.visible_row(s, ident, Experiment, exp_id, "experiment")

    def _json(self, s, row: Experiment, detail: bool) -> dict:
        spec = row.spec
        q = (select(Trial, Job.state, Job.attempt, Job.failure).outerjoin(Job, Job.id == Trial.job_id)
             .where(Trial.experiment_id == row.id).order_by(Trial.number))
        got = list(s.execute(q))
        metric = spec["objective"]["metric"]
        series = ingest.series(s, [t.job_id for t, *_ in got if t.job_id], None if detail else [metric])
        trials = []
        for t, js, attempt, fail in got:
            m = series.get(t.job_id, {})
            trials.append({"id": t.number, "number": t.number, "job_id": t.job_id, "parameters": t.parameters,
                           "budget": t.budget, "state": trial_state(js, t.stopped_by), "job_state": js,
                           "stopped_by": t.stopped_by, "origin": t.origin, "steered": bool(t.steered),
                           "attempt": attempt, "value": last_value(m.get(metric)),
                           "last_step": (m.get(metric) or [[None]])[-1][0], "failure": fail,
                           **({"metrics": m} if detail else {})})
        counts: dict = {}
        for t in trials:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        out = {"id": row.id, "name": row.name, "user": row.user, "tenant": row.tenant, "profile": row.profile,
               "priority": row.priority, "state": row.state, "message": row.message, "notebook_path": row.notebook_path,
               **{k: spec.get(k) for k in ("space", "objective", "strategy", "sampler", "max_trials", "parallelism",
                                          "budget", "pruner", "metrics_collector", "rungs", "seed", "parameters")},
               "counts": counts, "best": best(trials, spec["objective"]["mode"]),
               "created_at": iso(row.created_at), "updated_at": iso(row.updated_at), "finished_at": iso(row.finished_at)}
        if detail:
            out["trials"] = trials
        return out

    def _get_db(self, ident: Identity, exp_id: str) -> dict:
        with self.ctx.db.read() as s:
            return self._json(s, self._exp(s, ident, exp_id), True)

    async def get(self, ident: Identity, exp_id: str) -> dict:
        return await self.ctx.offload.io(self._get_db, ident, exp_id)

    def _list_db(self, ident: Identity, before: int | None, limit: int | None) -> dict:
        limit = min(limit or self.settings.page_size, self.settings.page_size)
        with self.ctx.db.read() as s:
            q = select(Experiment)
            if not ident.is_admin:
                tenants = self.ctx.admin_tenants(ident)
                q = q.where((Experiment.user == ident.name) | Experiment.tenant.in_(tenants or [""]))
            if before:
                q = q.where(Experiment.id < before)
            rows = list(s.execute(q.order_by(Experiment.id.desc()).limit(limit + 1)).scalars())
            more, rows = len(rows) > limit, rows[:limit]
            return {"experiments": [self._json(s, r, False) for r in rows],
                    "next": f"limit={limit}&before={rows[-1].id}" if more and rows else None}

    async def list(self, ident: Identity, before: int | None = None, limit: int | None = None) -> dict:
        return await self.ctx.offload.io(self._list_db, ident, before, limit)

    # ------------------------------------------------------------------ a person at the wheel
    def _trial(self, s, ident, exp_id: str, number: str) -> tuple[Experiment, Trial]:
        exp = self._exp(s, ident, exp_id)
        n = row_id(number) if number != "0" else 0
        t = s.execute(select(Trial).where(Trial.experiment_id == exp.id, Trial.number == n)).scalar()
        if t is None or (n == 0 and number != "0"):
            raise NotFound(f"no trial {number!r} in experiment {exp.id}")
        return exp, t

    def _stop_db(self, ident: Identity, exp_id: str, number: str) -> dict:
        with self.ctx.db.session() as s:
            exp, t = self._trial(s, ident, exp_id, number)
            state = s.get(Job, t.job_id).state if t.job_id else None
            if state in FINAL_STATES:
                raise Conflict(f"trial {t.number} is already {trial_state(state, t.stopped_by)}", "already_final")
            t.stopped_by = ident.name
            cancel_jobs(s, [t.job_id], f"stopped by {ident.name}")
            job_id, attempt = t.job_id, (s.get(Job, t.job_id).attempt if t.job_id else 0)
        if job_id:
            self._write_stop(job_id, attempt, f"stopped by {ident.name}")  # its report() raises
        self.ctx.controller.wake()
        return self._get_db(ident, exp_id)

    async def stop_trial(self, ident, exp_id, number) -> dict:
        return await self.ctx.offload.io(self._stop_db, ident, exp_id, number)

    def _resume_db(self, ident: Identity, exp_id: str, number: str, budget) -> dict:
        with self.ctx.db.session() as s:
            exp, t = self._trial(s, ident, exp_id, number)
            if exp.state == EXP_CANCELLED:
                raise Conflict(f"experiment {exp.id} is cancelled", "experiment_final")
            job = s.get(Job, t.job_id) if t.job_id else None
            if job is None or job.state not in FINAL_STATES:
                raise Conflict(f"trial {t.number} is {job.state if job else 'pending'}: stop it first", "not_stopped")
            b = exp.spec.get("budget") or {}
            new = t.budget
            if b.get("parameter"):
                if budget is None:
                    budget = (t.budget or 0) + max(1, int(b.get("max") or 1))
                if isinstance(budget, bool) or not isinstance(budget, int) or budget <= (t.budget or 0):
                    raise Invalid(f"'budget' must be an integer above the trial's {t.budget}", "bad_budget")
                new = budget
            params = dict(job.parameters or {})
            if b.get("parameter"):
                params[b["parameter"]] = new
            # the same job queued again: its next attempt has the same AISTACK_CHECKPOINT_DIR
            transition(s, job.id, FINAL_STATES, QUEUED, message=f"resumed by {ident.name} (budget {new})",
                       enqueued=0, cancel_requested=0, failure=None, finished_at=None, handle=None, parameters=params)
            t.budget, t.stopped_by, t.steered = new, None, 1
            if exp.state != EXP_RUNNING:
                exp.state, exp.finished_at, exp.message = EXP_RUNNING, None, None
        self.driver.forget(int(exp_id))
        self.ctx.controller.wake()
        return self._get_db(ident, exp_id)

    async def resume_trial(self, ident, exp_id, number, budget=None) -> dict:
        return await self.ctx.offload.io(self._resume_db, ident, exp_id, number, budget)

    def _add_db(self, ident: Identity, exp_id: str, body: dict) -> dict:
        with self.ctx.db.read() as s:
            exp = self._exp(s, ident, exp_id)
            s.expunge(exp)
            if exp.state == EXP_CANCELLED:
                raise Conflict(f"experiment {exp.id} is cancelled", "experiment_final")
            n = s.execute(select(Trial.number).where(Trial.experiment_id == exp.id)
                          .order_by(Trial.number.desc()).limit(1)).scalar()
        if set(body) - {"parameters"}:
            raise Invalid(f"unknown fields: {', '.join(sorted(set(body) - {'parameters'}))}")
        try:
            params = sp.check_values(sp.distributions(exp.spec["space"]), body.get("parameters"))
        except sp.SpaceError as e:
            raise Invalid(str(e), "bad_space") from None
        number = 0 if n is None else n + 1
        d = self.driver.studies.get(exp.id)
        if d is not None:
            d.add(number, params)
        b = exp.spec.get("budget") or {}
        row = Trial(experiment_id=exp.id, number=number, parameters=params, budget=b.get("max"), origin="user",
                    created_at=utcnow())
        if not self.driver._launch(exp, row):
            raise Conflict(f"the trial could not be queued: {self._message(exp.id)}", "refused")
        with self.ctx.db.session() as s:
            s.execute(update(Experiment).where(Experiment.id == exp.id)
                      .values(state=EXP_RUNNING, finished_at=None, spec={**exp.spec, "max_trials": max(
                          exp.spec["max_trials"], number + 1)}))
        self.driver.forget(exp.id)
        return self._get_db(ident, exp_id)

    def _message(self, exp_id: int) -> str:
        with self.ctx.db.read() as s:
            return s.get(Experiment, exp_id).message or ""

    async def add_trial(self, ident, exp_id, body: dict) -> dict:
        return await self.ctx.offload.io(self._add_db, ident, exp_id, body)

    def _cancel_db(self, ident: Identity, exp_id: str) -> dict:
        with self.ctx.db.session() as s:
            exp = self._exp(s, ident, exp_id)
            if exp.state in EXP_FINAL and exp.state != "completed":
                raise Conflict(f"experiment {exp.id} is already {exp.state}", "already_final")
            exp.state, exp.finished_at, exp.updated_at = EXP_CANCELLED, utcnow(), utcnow()
            ids = [j for (j,) in s.execute(select(Trial.job_id).where(Trial.experiment_id == exp.id)) if j]
            cancel_jobs(s, ids, f"experiment cancelled by {ident.name}")
        self.driver.forget(int(exp_id))
        self.ctx.controller.wake()
        return self._get_db(ident, exp_id)

    async def cancel(self, ident, exp_id) -> dict:
        return await self.ctx.offload.io(self._cancel_db, ident, exp_id)

    def _write_stop(self, job_id: int, attempt: int, why: str) -> float | None:
        """The stop marker of a running trial (marker.write_stop); the seconds its cancel then waits."""
        how = marker.write_stop(self.ctx.executor, job_id, attempt, why, self.ctx.run_files)
        if how is None:
            return None
        return self.settings.stop_grace_s if how == "file" else self.settings.pod_stop_grace_s

    # ------------------------------------------------------------------ metrics of any job
    def _pod_metrics(self, job_id: str, token, body: bytes) -> dict:
        row = self.pods._attempt(job_id, token, active=False)
        pts = ingest.parse_jsonl(body)
        ingest.ingest(self.ctx.db, [(row.id, row.attempt, pts, None, None, None)])
        out = {"ok": True, "points": len(pts)}
        stop = marker.read_stop(self.ctx.run_files, row.id, row.attempt)
        if stop:  # a pruned / stopped trial: the pod writes its marker, its report() raises
            out["stop"] = stop
        return out

    async def pod_metrics(self, job_id: str, token, body: bytes) -> dict:
        return await self.ctx.offload.io(self._pod_metrics, job_id, token, body)

    def _job_metrics_db(self, ident: Identity, job_id: str) -> dict:
        with self.ctx.db.read() as s:
            row = self.jobs._row(s, ident, job_id)
            return {"job_id": row.id, "state": row.state, "metrics": ingest.series(s, [row.id]).get(row.id, {})}

    async def job_metrics(self, ident: Identity, job_id: str) -> dict:
        return await self.ctx.offload.io(self._job_metrics_db, ident, job_id)

    # ------------------------------------------------------------------ the pass
    async def collect(self) -> int:
        return await self.collector.collect()

    async def run_pass(self) -> dict:
        self.collector.after_end_s = self.settings.ingest_after_end_s
        await self.collect()
        return await self.ctx.offload.io(self.driver.tick)

    async def run_forever(self, stop: asyncio.Event, is_leader=lambda: True) -> None:
        last = 0.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(self.settings.watch_interval_s,
                                                                self.settings.pass_interval_s))
                return
            except asyncio.TimeoutError:
                pass
            if not is_leader():
                continue
            now = time.monotonic()
            if now - last < self.settings.pass_interval_s and not (
                    self.collector.watch and await self.ctx.offload.io(self.collector.changed)):
                continue
            last = now
            try:
                await self.run_pass()
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("experiments pass failed")
