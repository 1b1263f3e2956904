"""ASHA's share of the grid's epochs without the service: our StudyDriver (Optuna's SuccessiveHalvingPruner,
the grid sampler, the rungs of benchmarks/experiments_asha.py: min 1, reduction factor 3, budget 27) fed by
a simulated clock, ``parallelism`` trials at once, one epoch per time unit, a freed slot refilled at once.

The curves are synthetic (``q * (1 - exp(-epoch / 5))`` with a random quality q per configuration, plus
optional noise), or, with ``--mlp-scale S``, the real validation curves of benchmarks/experiments_asha.py's
notebook at that ``--epoch-scale`` (its 27 configurations trained here, in this process, once): so this says
what the pruner itself does with 27 trials, apart from the service's latency, and how much the grid's shuffle
(the experiment's ``seed``) moves it: how many epochs and how many trials run to the end, per seed.

    .venv/bin/python benchmarks/experiments_asha_simulated.py [--seeds 10] [--parallelism 2] [--noise 0.01]
                                                              [--mlp-scale 40]
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optuna  # noqa: E402

from job_runner.experiments import space as sp  # noqa: E402
from job_runner.experiments.study import StudyDriver  # noqa: E402

BUDGET = 27
SYNTHETIC = {"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1, 2]}


def mlp_curves(scale: float) -> tuple[dict, dict]:
    """benchmarks/experiments_asha.py's space and its notebook's validation accuracy per epoch for every
    configuration (the notebook's training cell run here, report() collecting the values)."""
    from benchmarks import experiments_asha as bench
    source = bench.TRAIN.replace("from job_runner import report", "")
    curves = {}
    for lr, hidden, l2 in itertools.product(*bench.SPACE.values()):
        values = []
        env = {"lr": lr, "hidden": hidden, "l2": l2, "epochs": BUDGET, "data_seed": 7, "init_seed": 11,
               "scale": scale, "report": lambda step, val_accuracy: values.append(val_accuracy)}
        exec(source, env)  # noqa: S102 - the benchmark's own notebook cell
        curves[(lr, hidden, l2)] = values
    return bench.SPACE, curves


def run(seed: int, parallelism: int, space: dict, value) -> tuple[int, int, float]:
    """``value(params, epoch, rng)`` -> the objective. Returns (epochs, trials run to the end, best final)."""
    spec = {"strategy": "asha", "objective": {"metric": "acc", "mode": "max"}, "max_trials": 27,
            "parallelism": parallelism, "budget": {"parameter": "epochs", "max": BUDGET},
            "pruner": {"min_resource": 1, "reduction_factor": 3}, "seed": seed, "space": space}
    d = StudyDriver(spec, sp.distributions(space))
    rng = random.Random(seed)
    used, running = [], []
    state = {"n": 0}

    def launch(now: float) -> None:
        params = d.new_trial(state["n"], used)
        if params is not None:
            used.append(params)
            heapq.heappush(running, (now + 1.0, state["n"], 1))
            state["n"] += 1

    for _ in range(parallelism):
        launch(0.0)
    epochs = completed = 0
    best = -math.inf
    while running:
        now, number, epoch = heapq.heappop(running)
        epochs += 1
        v = value(used[number], epoch, rng)
        if d.feed(number, [(epoch, v)]):
            d.finish(number, "pruned")
            launch(now)
        elif epoch == BUDGET:
            d.finish(number, "completed", v)
            completed += 1
            best = max(best, v)
            launch(now)
        else:
            heapq.heappush(running, (now + 1.0, number, epoch + 1))
    return epochs, completed, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--mlp-scale", type=float, default=None,
                    help="replay the real notebook's curves at this --epoch-scale instead of synthetic ones")
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if a.mlp_scale is None:
        space, quality = SYNTHETIC, {}

        def value(params, epoch, rng):
            q = quality.setdefault(repr(sorted(params.items())), rng.random())
            return q * (1 - math.exp(-epoch / 5)) + (rng.gauss(0, a.noise) if a.noise else 0.0)
        grid_best = None
    else:
        space, curves = mlp_curves(a.mlp_scale)

        def value(params, epoch, rng):
            return curves[tuple(params[k] for k in space)][epoch - 1]
        grid_best = max(c[-1] for c in curves.values())
    got = [run(s, a.parallelism, space, value) for s in range(a.seeds)]
    grid = 27 * BUDGET
    shares = [e / grid for e, _, _ in got]
    out = {"grid_epochs": grid, "epochs": [e for e, _, _ in got], "run_to_the_end": [c for _, c, _ in got],
           "share_by_seed": [round(x, 3) for x in shares],
           "share_median": round(statistics.median(shares), 3), "share_min": round(min(shares), 3),
           "share_max": round(max(shares), 3), "parallelism": a.parallelism, "noise": a.noise,
           "curves": "synthetic" if a.mlp_scale is None else f"mlp --epoch-scale {a.mlp_scale}"}
    if grid_best is not None:
        out["gap_points_by_seed"] = [round(100 * (grid_best - b), 2) for _, _, b in got]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
