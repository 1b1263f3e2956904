"""ASHA's share of the grid's epochs without the service: our StudyDriver (Optuna's SuccessiveHalvingPruner,
the grid sampler, the rungs of benchmarks/experiments_asha.py: min 1, reduction factor 3, budget 27) fed by
a simulated clock, ``parallelism`` trials at once, one epoch per time unit, a freed slot refilled at once.
The curves are synthetic (``q * (1 - exp(-epoch / 5))`` with a random quality q per configuration, plus
optional noise), so this says what the pruner itself does with 27 trials, apart from the notebook's curves
and the service's latency: how many epochs and how many trials run to the end.

    .venv/bin/python benchmarks/experiments_asha_simulated.py [--seeds 10] [--parallelism 2] [--noise 0.01]
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics

import optuna

from job_runner.experiments import space as sp
from job_runner.experiments.study import StudyDriver

BUDGET = 27


def run(seed: int, parallelism: int, noise: float) -> tuple[int, int]:
    spec = {"strategy": "asha", "objective": {"metric": "acc", "mode": "max"}, "max_trials": 27,
            "parallelism": parallelism, "budget": {"parameter": "epochs", "max": BUDGET},
            "pruner": {"min_resource": 1, "reduction_factor": 3}, "seed": seed,
            "space": {"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1, 2]}}
    d = StudyDriver(spec, sp.distributions(spec["space"]))
    rng = random.Random(seed)
    quality, used, running = {}, [], []
    state = {"n": 0}

    def launch(now: float) -> None:
        params = d.new_trial(state["n"], used)
        if params is not None:
            used.append(params)
            quality[state["n"]] = rng.random()
            heapq.heappush(running, (now + 1.0, state["n"], 1))
            state["n"] += 1

    for _ in range(parallelism):
        launch(0.0)
    epochs = completed = 0
    while running:
        now, number, epoch = heapq.heappop(running)
        epochs += 1
        value = quality[number] * (1 - math.exp(-epoch / 5)) + (rng.gauss(0, noise) if noise else 0.0)
        if d.feed(number, [(epoch, value)]):
            d.finish(number, "pruned")
            launch(now)
        elif epoch == BUDGET:
            d.finish(number, "completed", value)
            completed += 1
            launch(now)
        else:
            heapq.heappush(running, (now + 1.0, number, epoch + 1))
    return epochs, completed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.0)
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    got = [run(s, a.parallelism, a.noise) for s in range(a.seeds)]
    grid = 27 * BUDGET
    shares = [e / grid for e, _ in got]
    print(json.dumps({"grid_epochs": grid, "epochs": [e for e, _ in got], "run_to_the_end": [c for _, c in got],
                      "share_median": round(statistics.median(shares), 3), "share_min": round(min(shares), 3),
                      "share_max": round(max(shares), 3), "parallelism": a.parallelism, "noise": a.noise}))


if __name__ == "__main__":
    main()
