"""The search and the pruning of one experiment, by Optuna driven through ask/tell (an in-memory study the
service's leader holds, rebuilt from our tables after a restart: ``StudyDriver.restore``).

Strategies: ``grid`` (every point of a finite space, each once, in a seeded shuffled order), ``random``
(``RandomSampler``), ``tpe`` (``TPESampler``): no early stopping; ``asha`` (``SuccessiveHalvingPruner``:
asynchronous successive halving), ``hyperband`` (``HyperbandPruner``), ``median`` (``MedianPruner``, Katib's
median stop): a sampler (``sampler``: grid | random | tpe; default grid when the whole grid fits in
``max_trials``, else random) plus a pruner that judges each trial at every reported step of the objective.
"""
from __future__ import annotations

import logging
import random

import optuna
from optuna.trial import TrialState

from . import space as sp

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

STRATEGIES = ("grid", "random", "tpe", "asha", "hyperband", "median")
PRUNING = ("asha", "hyperband", "median")
SAMPLERS = ("grid", "random", "tpe")


def rungs(spec: dict) -> list[int]:
    """The steps at which ASHA judges a trial (``min_resource * eta**k`` below the budget)."""
    p = spec.get("pruner") or {}
    eta, r = int(p.get("reduction_factor", 3)), int(p.get("min_resource", 1))
    top = int((spec.get("budget") or {}).get("max") or 0) or r * eta ** 4
    out, k = [], 0
    while r * eta ** k < top:
        out.append(r * eta ** k)
        k += 1
    return out or [r]


def default_pruner_settings(spec: dict) -> dict:
    """``min_resource`` = budget / eta**3 (at least 1): rungs at 1/27, 1/9, 1/3 of the budget."""
    p = dict(spec.get("pruner") or {})
    eta = int(p.get("reduction_factor", 3))
    budget = int((spec.get("budget") or {}).get("max") or 0)
    p.setdefault("reduction_factor", eta)
    p.setdefault("min_resource", max(1, budget // eta ** 3) if budget else 1)
    return p


def sampler_name(spec: dict, dists: dict) -> str:
    strategy = spec["strategy"]
    if strategy in SAMPLERS:
        return strategy
    if spec.get("sampler"):
        return spec["sampler"]
    try:
        size = sp.grid_size(sp.grid(dists))
    except sp.SpaceError:
        return "random"
    return "grid" if size <= int(spec["max_trials"]) else "random"


class StudyDriver:
    """One experiment's Optuna study. ``new_trial`` asks for the next configuration (None: nothing left),
    ``feed`` reports a trial's objective points and says whether the pruner stops it, ``finish`` tells."""

    def __init__(self, spec: dict, dists: dict, n_existing: int = 0):
        self.spec = spec
        self.dists = dists
        self.direction = "maximize" if spec["objective"].get("mode", "max") == "max" else "minimize"
        seed = int(spec.get("seed", 0)) + n_existing
        self.sampler = sampler_name(spec, dists)
        if self.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed)
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = self._pruner(spec)
        self.pruning = spec["strategy"] in PRUNING
        self.study = optuna.create_study(direction=self.direction, sampler=sampler, pruner=pruner)
        self.trials: dict[int, optuna.Trial] = {}  # our trial number -> its Optuna trial
        self.last_step: dict[int, int] = {}
        self.done: set[int] = set()
        self._grid: list[dict] | None = None
        if self.sampler == "grid":
            pts = sp.grid_points(sp.grid(dists))
            random.Random(int(spec.get("seed", 0))).shuffle(pts)
            self._grid = pts

    @staticmethod
    def _pruner(spec: dict):
        strategy = spec["strategy"]
        p = default_pruner_settings(spec)
        if strategy == "asha":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=int(p["min_resource"]), reduction_factor=int(p["reduction_factor"]),
                min_early_stopping_rate=int(p.get("min_early_stopping_rate", 0)))
        if strategy == "hyperband":
            budget = int((spec.get("budget") or {}).get("max") or 100)
            return optuna.pruners.HyperbandPruner(min_resource=int(p["min_resource"]), max_resource=budget,
                                                  reduction_factor=int(p["reduction_factor"]))
        if strategy == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=int(p.get("n_startup_trials", 3)),
                                               n_warmup_steps=int(p.get("n_warmup_steps", p["min_resource"])))
        return optuna.pruners.NopPruner()

    # ------------------------------------------------------------------ trials
    def _ask(self, number: int, params: dict | None) -> dict:
        if params is not None:
            self.study.enqueue_trial({k: v for k, v in params.items() if k in self.dists}, skip_if_exists=False)
        t = self.study.ask(self.dists)
        self.trials[number] = t
        return {**(params or {}), **t.params}

    def new_trial(self, number: int, used: list[dict]) -> dict | None:
        """The next configuration for trial ``number`` (None: the grid is done)."""
        if self._grid is not None:
            seen = {repr(sorted((k, p.get(k)) for k in self.dists)) for p in used}
            nxt = next((g for g in self._grid if repr(sorted(g.items())) not in seen), None)
            return None if nxt is None else self._ask(number, nxt)
        return self._ask(number, None)

    def add(self, number: int, params: dict) -> dict:
        """A trial with given parameters (a person's, or one restored)."""
        return self._ask(number, params)

    def feed(self, number: int, points, judge: bool = True) -> bool:
        """Report ``points`` [(step, value)] of trial ``number`` (steps past the last one fed); True when
        the pruner says stop (``judge``: False for a trial a person steers)."""
        t = self.trials.get(number)
        if t is None or number in self.done:
            return False
        prune = False
        last = self.last_step.get(number, -1)
        # no verdict at the budget's last step: the trial has done its whole budget, stopping it there saves
        # nothing and would call a finished run pruned (Optuna's pruners do not know the budget's end)
        end = int((self.spec.get("budget") or {}).get("max") or 0) or None
        for step, value in sorted(points):
            if step <= last:
                continue
            t.report(float(value), int(step))
            last = int(step)
            if judge and self.pruning and (end is None or step < end) and t.should_prune():
                prune = True
                break
        self.last_step[number] = last
        return prune

    def finish(self, number: int, state: str, value: float | None = None) -> None:
        t = self.trials.get(number)
        if t is None or number in self.done:
            return
        self.done.add(number)
        if state == "completed" and value is not None:
            self.study.tell(t, float(value))
        elif state in ("pruned", "stopped"):
            self.study.tell(t, state=TrialState.PRUNED)
        else:
            self.study.tell(t, state=TrialState.FAIL)

    @classmethod
    def restore(cls, spec: dict, dists: dict, trials: list[dict], points: list[tuple]) -> "StudyDriver":
        """Rebuilt from our rows: ``trials`` [{number, parameters, state, value}] by number, ``points``
        [(number, step, value)] in the order they were recorded (the pruner's rungs see the same order)."""
        d = cls(spec, dists, n_existing=len(trials))
        for t in sorted(trials, key=lambda t: t["number"]):
            d.add(t["number"], t["parameters"])
        for number, step, value in points:  # judged again (the rungs record their values); the verdicts
            d.feed(number, [(step, value)])   # were acted on when they were new
        for t in trials:
            if t["state"] in ("completed", "pruned", "stopped", "failed", "cancelled"):
                d.finish(t["number"], t["state"], t.get("value"))
        return d
