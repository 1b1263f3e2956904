"""One pass over the running experiments (synchronous: the service runs it in its worker thread).

For each experiment: new objective points go to its Optuna study (``study.StudyDriver``); a trial the pruner
stops gets its job's cancel requested (``stopped_by`` "rule": the controller frees its slot on its next
pass, its output, metrics and checkpoint stay); finished trials are told; free slots (``parallelism`` minus
the trials whose jobs are not final) get new trials through ``submit`` (the service's ordinary job
submission: same queue, quotas, fair share); an objective never reported past the first rung is said
in the experiment's ``message`` and the experiment fails; no trial left to run: completed.
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import select, update

from job_runner.db import ADMITTED, CANCELLED, FINAL_STATES, QUEUED, RUNNING, Job, utcnow
from job_runner.db.ops import transition
from job_runner.failures import CANCELLED as F_CANCELLED
from job_runner.failures import failure
from job_runner.db.experiments import EXP_COMPLETED, EXP_FAILED, EXP_RUNNING, Experiment, JobMetric, Trial

from . import space as sp
from .study import StudyDriver, rungs
from .views import TRIAL_FINAL, trial_state

log = logging.getLogger(__name__)


class Refused(Exception):
    """``submit`` could not queue a trial now (quota, full queue): tried again next pass."""


class ExperimentDriver:
    def __init__(self, db, submit, wake=lambda: None, stop=lambda job_id, attempt, why: None):
        self.db = db
        # (job id, attempt, why) -> the seconds its cancel waits when the stop marker the trial's report()
        # looks for was written (marker.write_stop: the trial ends itself at its next report()), else None
        self.stop = stop
        self.grace: dict[int, float] = {}  # job id -> when its cancel is requested
        self.submit = submit  # (experiment row, parameters, trial number) -> job id, or raises Refused
        self.wake = wake
        self.studies: dict[int, StudyDriver] = {}
        self.seen: dict[int, int] = {}  # experiment id -> last job_metrics id fed

    def forget(self, exp_id: int) -> None:
        self.studies.pop(exp_id, None)
        self.seen.pop(exp_id, None)

    # ------------------------------------------------------------------ reads
    def _trials(self, s, exp_id: int) -> list[dict]:
        q = (select(Trial, Job.state, Job.attempt).outerjoin(Job, Job.id == Trial.job_id)
             .where(Trial.experiment_id == exp_id).order_by(Trial.number))
        return [{"tid": t.id, "number": t.number, "job_id": t.job_id, "parameters": t.parameters,
                 "job_state": js, "state": trial_state(js, t.stopped_by), "steered": bool(t.steered),
                 "stopped_by": t.stopped_by,
                 "attempt": att} for t, js, att in s.execute(q)]

    def _points(self, s, metric: str, job_ids, after: int) -> list[tuple]:
        if not job_ids:
            return []
        q = (select(JobMetric.id, JobMetric.job_id, JobMetric.step, JobMetric.value)
             .where(JobMetric.job_id.in_(list(job_ids)), JobMetric.name == metric, JobMetric.id > after)
             .order_by(JobMetric.id))
        return list(s.execute(q))

    def _study(self, s, exp: Experiment, trials: list[dict]) -> StudyDriver:
        d = self.studies.get(exp.id)
        if d is not None:
            return d
        dists = sp.distributions(exp.spec["space"])
        by_job = {t["job_id"]: t["number"] for t in trials if t["job_id"]}
        pts = self._points(s, exp.spec["objective"]["metric"], by_job, 0)
        values = {}
        for _, job_id, step, value in pts:
            values[by_job[job_id]] = value
        d = StudyDriver.restore(exp.spec, dists, [{**t, "value": values.get(t["number"])} for t in trials],
                                [(by_job[j], st, v) for _, j, st, v in pts])
        self.seen[exp.id] = pts[-1][0] if pts else 0
        self.studies[exp.id] = d
        return d

    # ------------------------------------------------------------------ the pass
    def tick(self) -> dict:
        """One pass; returns what it did ({"pruned": [...], "launched": [...]}) for tests and logs."""
        did = {"pruned": [], "launched": [], "completed": []}
        self._cancel_late()
        with self.db.read() as s:
            ids = list(s.execute(select(Experiment.id).where(Experiment.state == EXP_RUNNING)).scalars())
        for exp_id in ids:
            try:
                self._one(exp_id, did)
            except Exception:  # noqa: BLE001 - one experiment's trouble stops no other
                log.exception("experiment %s: pass failed", exp_id)
        if did["pruned"]:
            self.wake()
        return did

    def _one(self, exp_id: int, did: dict) -> None:
        with self.db.read() as s:
            exp = s.get(Experiment, exp_id)
            if exp is None or exp.state != EXP_RUNNING:
                return self.forget(exp_id)
            s.expunge(exp)
            trials = self._trials(s, exp_id)
            d = self._study(s, exp, trials)
            by_job = {t["job_id"]: t for t in trials if t["job_id"]}
            metric = exp.spec["objective"]["metric"]
            pts = self._points(s, metric, by_job, self.seen.get(exp_id, 0))
            problem = self._never_reported(s, exp, [t for t in trials if d.last_step.get(t["number"], -1) < 0])
        if pts:
            self.seen[exp_id] = pts[-1][0]
        late = [t["job_id"] for t in trials if t["stopped_by"] == "rule" and t["job_state"] not in FINAL_STATES
                and t["job_id"] not in self.grace]  # pruned before a restart: its cancel may be lost
        if late:
            self.grace.update({j: (0.0, by_job[j].get("attempt")) for j in late})
        new: dict[int, list] = {}
        last: dict[int, float] = {}
        for _, job_id, step, value in pts:
            new.setdefault(job_id, []).append((step, value))
        prune = []
        for job_id, points in new.items():
            t = by_job[job_id]
            if d.feed(t["number"], points, judge=not t["steered"]) and t["job_state"] not in FINAL_STATES:
                prune.append(t)
        for t in trials:  # tell the finished (the value: the objective's last point)
            if t["state"] in TRIAL_FINAL and t["number"] not in d.done and not t["steered"]:
                last[t["number"]] = None
                d.finish(t["number"], t["state"], self._final_value(exp, t))
        if problem:
            return self._fail(exp, problem)
        if prune:
            self._prune(prune, d.last_step)
            did["pruned"] += [(exp_id, t["number"]) for t in prune]
        # a pruned trial holds its slot until its job is final (the controller stops it on its next pass)
        active = sum(1 for t in trials if t["job_state"] not in FINAL_STATES) \
            + sum(1 for t in trials if t["job_id"] is None)
        free = int(exp.spec["parallelism"]) - active
        n = len(trials)
        exhausted = False
        while free > 0 and n < int(exp.spec["max_trials"]):
            params = d.new_trial(n, [t["parameters"] for t in trials])
            if params is None:
                exhausted = True
                break
            budget = exp.spec.get("budget") or {}
            row = Trial(experiment_id=exp_id, number=n, parameters=params, budget=budget.get("max"),
                        origin="sampler", created_at=utcnow())
            if not self._launch(exp, row):
                d.trials.pop(n, None)
                break
            trials.append({"job_id": row.job_id, "parameters": params, "job_state": "queued", "number": n})
            did["launched"].append((exp_id, n))
            n += 1
            free -= 1
        if active == 0 and free == int(exp.spec["parallelism"]) and (exhausted or n >= int(exp.spec["max_trials"])):
            self._complete(exp)
            did["completed"].append(exp_id)

    def _final_value(self, exp, t) -> float | None:
        with self.db.read() as s:
            q = (select(JobMetric.value).where(JobMetric.job_id == t["job_id"],
                                              JobMetric.name == exp.spec["objective"]["metric"])
                 .order_by(JobMetric.step.desc(), JobMetric.id.desc()).limit(1))
            return s.execute(q).scalar() if t["job_id"] else None

    def _never_reported(self, s, exp, trials) -> str | None:
        """A trial that reported other metrics past the first rung (or finished) without the objective."""
        metric = exp.spec["objective"]["metric"]
        first = rungs(exp.spec)[0]
        for t in trials:
            if not t["job_id"]:
                continue
            names = dict(s.execute(select(JobMetric.name, JobMetric.step).where(JobMetric.job_id == t["job_id"])
                                   .order_by(JobMetric.step)).all())
            if metric in names:
                continue
            past_rung = any(step >= first for step in names.values())
            if past_rung or t["state"] == "completed":
                seen = ", ".join(sorted(names)) or "nothing"
                return (f"the objective metric {metric!r} was never reported: trial {t['number']} "
                        f"{'finished' if t['state'] == 'completed' else f'passed the first rung (step {first})'}"
                        f" and reported {seen} (report({metric}=...) or a '{metric}=<value>' stdout line)")
        return None

    # ------------------------------------------------------------------ writes
    def _launch(self, exp, row: Trial) -> bool:
        with self.db.session() as s:  # the trial first (state before side effects), then its job
            s.add(row)
            s.flush()
            s.expunge(row)
        params = dict(exp.spec.get("parameters") or {})
        params.update(row.parameters)
        budget = exp.spec.get("budget") or {}
        if budget.get("parameter"):
            params[budget["parameter"]] = row.budget
        try:
            job_id = self.submit(exp, params, row.number)
        except Refused as e:
            with self.db.session() as s:
                s.execute(Trial.__table__.delete().where(Trial.id == row.id))
                s.execute(update(Experiment).where(Experiment.id == exp.id).values(message=f"waiting: {e}"))
            return False
        with self.db.session() as s:
            s.execute(update(Trial).where(Trial.id == row.id).values(job_id=job_id))
            if exp.message and exp.message.startswith("waiting: "):
                s.execute(update(Experiment).where(Experiment.id == exp.id).values(message=None))
        row.job_id = job_id
        return True

    def _prune(self, trials, steps) -> None:
        """stopped_by "rule" first; then the stop marker (the trial ends itself at its next report(), its
        output, metrics and checkpoint whole); its cancel is requested at once where no marker could be
        written (a queued job), else after the grace ``stop`` gave if its job is still not final."""
        with self.db.session() as s:
            for t in trials:
                s.execute(update(Trial).where(Trial.id == t["tid"]).values(stopped_by="rule"))
        now, at_once = time.monotonic(), []
        for t in trials:
            why = f"pruned by the experiment's rule at step {steps.get(t['number'])}"
            grace = self.stop(t["job_id"], t.get("attempt") or 0, why) if t["job_state"] == RUNNING else None
            if grace is not None:
                self.grace[t["job_id"]] = (now + float(grace), t.get("attempt"))
            else:
                at_once.append((t["job_id"], why))
        if at_once:
            with self.db.session() as s:
                for job_id, why in at_once:
                    cancel_jobs(s, [job_id], why)

    def _cancel_late(self) -> None:
        """Cancel requests of pruned trials still running after their grace (only the attempt pruned: a
        trial resumed meanwhile is left alone); each job once (its entry stays, at infinity)."""
        now = time.monotonic()
        due = [(j, att) for j, (at, att) in self.grace.items() if at <= now]
        if not due:
            return
        with self.db.session() as s:
            for j, att in due:
                s.execute(update(Job).where(Job.id == j, Job.attempt == att, Job.state.in_((ADMITTED, RUNNING)))
                          .values(cancel_requested=1))
        for j, att in due:
            self.grace[j] = (float("inf"), att)
        self.wake()

    def _complete(self, exp) -> None:
        with self.db.session() as s:
            s.execute(update(Experiment).where(Experiment.id == exp.id, Experiment.state == EXP_RUNNING)
                      .values(state=EXP_COMPLETED, finished_at=utcnow(), updated_at=utcnow()))
        self.forget(exp.id)

    def _fail(self, exp, message: str) -> None:
        with self.db.session() as s:
            s.execute(update(Experiment).where(Experiment.id == exp.id, Experiment.state == EXP_RUNNING)
                      .values(state=EXP_FAILED, message=message, finished_at=utcnow(), updated_at=utcnow()))
            job_ids = [j for (j,) in s.execute(select(Trial.job_id).where(Trial.experiment_id == exp.id))]
            cancel_jobs(s, [j for j in job_ids if j], "the experiment failed")
        self.forget(exp.id)
        self.wake()


def cancel_jobs(s, job_ids, message: str) -> None:
    """Queued jobs cancelled at once, running ones with their cancel requested (the controller stops them
    and frees their slices on its next pass), in the caller's transaction."""
    for job_id in job_ids:
        if not transition(s, job_id, QUEUED, CANCELLED, message=message, cancel_requested=1,
                          finished_at=utcnow(), failure=failure(F_CANCELLED, message)):
            s.execute(update(Job).where(Job.id == job_id, Job.state.notin_(FINAL_STATES))
                      .values(cancel_requested=1))
