"""Cost of one scheduling pass with many waiting workloads, and what the start estimates add to it.

  .venv/bin/python benchmarks/scheduling_pass.py [--waiting 5000] [--running 64] [--passes 20]

A cluster of 8 nodes x 8 GPUs held by running jobs with known expected durations, and N waiting workloads
(a mix of whole GPUs and shares, some with an expected duration, some with history, some with none) over
four tenants, half of them with a GPU quota. Each pass admits nothing (the cluster is full), so the pass is
the admission walk plus the estimates (earliest / expected / latest start) of every waiting workload.

Prints the median and p95 pass time, and the ratio of a full pass to the same pass with the estimate step
replaced by a no-op (the baseline, run in this process on the same state): what `estimates.estimate` costs.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job_runner.scheduling import Inventory, Quota, Scheduler, SliceRequest, Tenant, Workload  # noqa: E402
from job_runner.scheduling import scheduler as scheduler_module  # noqa: E402


def build(waiting: int, running: int, seed: int) -> Scheduler:
    rnd = random.Random(seed)
    inv = Inventory.from_config([{"name": "gpu", "cpu_milli": 128000, "memory_mib": 1024000, "gpus": 8,
                                  "gpu_model": "A100-80GB", "count": max(1, running // 8)}])
    tenants = [Tenant("t0", {}), Tenant("t1", {}), Tenant("t2", {"any": Quota(gpu_milli=16000)}),
               Tenant("t3", {"any": Quota(gpu_milli=24000)})]
    s = Scheduler(inv, tenants)
    for i in range(running):  # fill every GPU with a job that has a known end
        s.submit(Workload(f"r{i}", f"t{i % 4}", f"u{i % 16}", "job", "normal", SliceRequest("whole", gpus=1),
                          float(i), rnd.uniform(60, 7200)))
    s.schedule(1000.0)
    for i in range(waiting):
        req = SliceRequest("whole", gpus=rnd.choice((1, 1, 2, 4))) if rnd.random() < 0.6 else \
            SliceRequest("share", gpu_milli=rnd.choice((250, 500)))
        kind = rnd.random()
        duration = rnd.uniform(60, 3600) if kind < 0.4 else None
        spread = (duration * 0.8, duration * 1.3) if duration and kind < 0.2 else None
        s.submit(Workload(f"w{i}", f"t{i % 4}", f"u{i % 16}", "job", "normal", req, 2000.0 + i, duration, spread))
    return s


def passes(s: Scheduler, n: int) -> list[float]:
    out = []
    for k in range(n):
        t0 = time.perf_counter()
        d = s.schedule(3000.0 + k)
        out.append(time.perf_counter() - t0)
        assert not d.admitted, "the cluster is full: a pass must admit nothing"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--waiting", type=int, default=5000)
    ap.add_argument("--running", type=int, default=64)
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    s = build(a.waiting, a.running, a.seed)
    full = passes(s, a.passes)
    pending = len(s.schedule(4000.0).pending)
    real = scheduler_module.estimate
    scheduler_module.estimate = lambda order, now, ledger, tenants: []
    try:
        base = passes(s, a.passes)
    finally:
        scheduler_module.estimate = real

    def ms(xs):
        xs = sorted(xs)
        return statistics.median(xs) * 1e3, xs[int(0.95 * (len(xs) - 1))] * 1e3

    (fm, fp), (bm, bp) = ms(full), ms(base)
    print(f"waiting workloads: {pending}  running: {a.running}  passes: {a.passes}")
    print(f"pass with estimates    median {fm:7.1f} ms  p95 {fp:7.1f} ms")
    print(f"pass without (baseline) median {bm:7.1f} ms  p95 {bp:7.1f} ms")
    print(f"estimates per waiting workload: {(fm - bm) * 1e3 / max(pending, 1):.1f} us")
    print(f"ratio full / baseline: {fm / bm:.2f}")


if __name__ == "__main__":
    main()
