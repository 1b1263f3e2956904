"""Allocator benchmark on Alibaba-format GPU traces (cluster-trace-gpu-v2023).

Inflation mode (default), as the FGD paper's public simulator replays the trace (Weng et al.,
USENIX ATC'23): the trace's tasks shuffled (seeded), then tasks sampled from it with replacement
(seeded) until the requested GPU reaches 130% of the cluster's GPU capacity, placed one by one with
none departing. The allocated GPU share of capacity is recorded each time the arrived request
crosses 1%, 2%, ... of capacity, with the floor of :func:`~.simulate_bounds.allocation_floor_milli`
at 100%. ``fgd`` is given the whole trace's target workload (the paper's simulator's offline
knowledge); ``default`` learns it online from the tasks as they arrive, as in the product::

    python -m job_runner.simulate --nodes NODES.csv --pods PODS.csv --policy first-fit,fgd,default [--seeds N] [--json]

Replay mode (``--mode replay``): arrivals at ``creation_time``, departures after the task's duration
(``deletion_time - creation_time``), tenants assigned by hashing the task name, admission through the
product's :class:`~job_runner.scheduling.Scheduler` under per-tenant quotas; reports utilisation over
time, mean queueing delay per tenant and Jain's fairness index.

Admission benchmark (``--mode admission``): one scheduling pass over 10,000 pending workloads of 100
tenants on the trace's cluster.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from .scheduling import (POLICIES, ClusterState, Inventory, Quota, Scheduler, SliceRequest, TargetWorkload, Tenant,
                         Workload, make_policy)
from .simulate_bounds import allocation_floor_milli

DEFAULT_SEEDS = 10
# policies given the trace's full target workload (the paper's simulator's offline knowledge)
OFFLINE_TARGET = {"fgd"}
FIRST_SEED = 42


@dataclass
class Task:
    name: str
    request: SliceRequest
    gpu_milli: int  # total GPU asked, milli
    created: float
    deleted: float


def read_pods(path: str) -> list[Task]:
    """Read ``name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...,creation_time,deletion_time]``."""
    tasks = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not an Alibaba pod list, missing columns {sorted(missing)}")
        for line, row in enumerate(reader, 2):
            try:
                n_gpu, milli = int(row["num_gpu"] or 0), int(row["gpu_milli"] or 0)
                spec = tuple(s for s in (row.get("gpu_spec") or "").split("|") if s)
                cpu, mem = int(row["cpu_milli"] or 0), int(row["memory_mib"] or 0)
                if n_gpu == 0 or milli == 0:
                    req, total = SliceRequest("cpu", cpu_milli=cpu, memory_mib=mem), 0
                elif n_gpu == 1 and milli < 1000:
                    req, total = SliceRequest("share", gpu_milli=milli, gpu_models=spec, cpu_milli=cpu,
                                              memory_mib=mem), milli
                else:
                    req, total = SliceRequest("whole", gpus=n_gpu, gpu_models=spec, cpu_milli=cpu,
                                              memory_mib=mem), 1000 * n_gpu
                created = float(row.get("creation_time") or 0)
                deleted = float(row.get("deletion_time") or 0)
            except ValueError as e:
                raise ValueError(f"{path}:{line}: {e}") from None
            tasks.append(Task(row["name"], req, total, created, deleted))
    if not tasks:
        raise ValueError(f"{path}: no tasks")
    return tasks


def inflate(tasks: list[Task], capacity_milli: int, ratio: float, seed: int) -> list[int]:
    """Arrival order of one experiment, as the FGD paper's simulator builds it (``SortClusterPods``
    then ``TunePodsByNodeTotalResource``): the trace's tasks shuffled; then, if they ask more GPU than
    ``ratio`` x capacity, random ones removed until they do not; else tasks sampled from the trace with
    replacement appended until the next one would pass ``ratio`` x capacity. Seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    gpu = np.array([t.gpu_milli for t in tasks], dtype=np.int64)
    order = rng.permutation(len(tasks))
    target = ratio * capacity_milli
    total = int(gpu.sum())
    if total > target:
        drop = rng.permutation(len(order))
        over = total - np.cumsum(gpu[order[drop]])
        k = int(np.argmax(over <= target)) + 1  # remove until within the target
        keep = np.ones(len(order), dtype=bool)
        keep[drop[:k]] = False
        return [int(i) for i in order[keep]]
    extra = []
    while gpu.sum() > 0:
        draw = rng.integers(0, len(tasks), size=max(64, len(tasks) // 4))
        cum = total + np.cumsum(gpu[draw])
        past = np.flatnonzero(cum > target)
        if len(past):
            extra.append(draw[:past[0]])
            break
        extra.append(draw)
        total = int(cum[-1])
    return [int(i) for i in np.concatenate([order] + extra)]


def run_inflation(inventory: Inventory, tasks: list[Task], policy_name: str, seed: int, ratio: float = 1.3) -> dict:
    """One experiment: returns the allocation curve and timing."""
    state = ClusterState(inventory)
    capacity = state.total_gpus * 1000
    # published-FGD mode: fgd is given the whole trace's classes up front, as the paper's simulator
    # does; default learns its classes online from the tasks as they arrive (observe), as in the product
    target = TargetWorkload.from_requests([t.request for t in tasks]) if policy_name in OFFLINE_TARGET else None
    policy = make_policy(policy_name, target, seed=seed)
    order = inflate(tasks, capacity, ratio, seed)
    steps = int(round(ratio * 100))
    curve = np.zeros(steps + 1)
    arrived = allocated = 0
    next_pct = 1
    failed = 0
    by_100 = []  # the requests that arrived until 100% of capacity was asked
    t0, c0 = time.perf_counter(), time.process_time()
    for k in order:
        task = tasks[k]
        policy.observe(task.request)
        p = policy.place(state, task.request)
        if p is None:
            failed += 1
        else:
            state.allocate(task.request, p)
            allocated += task.gpu_milli
        if arrived < capacity:
            by_100.append(task.request)
        arrived += task.gpu_milli
        while next_pct <= steps and arrived >= next_pct * capacity / 100:
            curve[next_pct] = 100.0 * allocated / capacity
            next_pct += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    while next_pct <= steps:  # the sampled workload stops just past the ratio
        curve[next_pct] = 100.0 * allocated / capacity
        next_pct += 1
    floor = allocation_floor_milli(inventory, by_100)
    return {"curve": curve, "floor_milli": floor["floor_milli"], "share_floor_milli": floor["share_sliver_milli"],
            "seconds": elapsed, "cpu_seconds": cpu, "decisions": len(order), "failed": failed,
            "gpus": state.total_gpus}


def inflation_summary(inventory, tasks, policy_name, seeds) -> dict:
    runs = [run_inflation(inventory, tasks, policy_name, s) for s in seeds]
    a100 = np.array([r["curve"][100] for r in runs])
    a130 = np.array([r["curve"][130] for r in runs])
    gpus = runs[0]["gpus"]
    return {
        "policy": policy_name,
        "alloc_pct_at_100": round(float(a100.mean()), 2),
        "alloc_pct_at_130": round(float(a130.mean()), 2),
        # spread over seeds: standard deviation, and the range
        "alloc_pct_at_100_std": round(float(a100.std()), 2),
        "alloc_pct_at_130_std": round(float(a130.std()), 2),
        "alloc_pct_at_100_range": [round(float(a100.min()), 2), round(float(a100.max()), 2)],
        "unallocated_gpus_at_100": round(gpus * (1 - a100.mean() / 100), 1),
        "unallocated_gpus_at_130": round(gpus * (1 - a130.mean() / 100), 1),
        "floor_gpus_at_100": round(float(np.mean([r["floor_milli"] for r in runs])) / 1000, 1),
        "share_floor_gpus_at_100": round(float(np.mean([r["share_floor_milli"] for r in runs])) / 1000, 1),
        # per CPU-second of this process: the figure does not depend on what else the machine runs
        "decisions_per_s": round(sum(r["decisions"] for r in runs) / max(sum(r["cpu_seconds"] for r in runs), 1e-9)),
        "decisions_per_wall_s": round(sum(r["decisions"] for r in runs) / sum(r["seconds"] for r in runs)),
        "seconds_per_experiment": round(float(np.mean([r["seconds"] for r in runs])), 2),
        "max_seconds_per_experiment": round(float(max(r["seconds"] for r in runs)), 2),
        "cpu_seconds_per_experiment": round(float(np.mean([r["cpu_seconds"] for r in runs])), 2),
        "seeds": list(seeds),
        "gpus": gpus,
        "failed_tasks_mean": round(float(np.mean([r["failed"] for r in runs])), 1),
    }


def waste_removed(policy: dict, base: dict) -> float | None:
    """Share of ``base``'s unallocated GPUs above the floor (at 100% arrived) that ``policy`` removes."""
    above = base["unallocated_gpus_at_100"] - base["floor_gpus_at_100"]
    if above <= 0:
        return None
    return (base["unallocated_gpus_at_100"] - policy["unallocated_gpus_at_100"]) / above


# ---- replay mode ------------------------------------------------------------------------------------

def tenant_of(name: str, n_tenants: int) -> str:
    """A stable tenant for a task name (hash, not Python's salted hash())."""
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    return f"tenant-{h % n_tenants:02d}"


def jain(values) -> float:
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0 or not (x ** 2).sum():
        return 1.0
    return float(x.sum() ** 2 / (len(x) * (x ** 2).sum()))


def run_replay(inventory: Inventory, tasks: list[Task], policy_name: str, n_tenants: int = 10,
               quota_factor: float = 0.3, load: float = 1.0, samples: int = 20) -> dict:
    """Arrivals at ``creation_time`` (divided by ``load``: 2 = arrivals twice as dense), each task
    running ``deletion_time - creation_time`` seconds once admitted; tenants by hashing task names, each
    with a GPU quota of ``quota_factor`` x the cluster (quotas are limits, not reservations, so they may
    sum to more than the cluster). A scheduling pass runs at every arrival and departure instant."""
    import heapq

    names = sorted({tenant_of(t.name, n_tenants) for t in tasks})
    cap_gpu = sum(len(n.gpus) for n in inventory.nodes) * 1000
    tenants = [Tenant(n, {"any": Quota(gpu_milli=int(quota_factor * cap_gpu))}) for n in names]
    sched = Scheduler(inventory, tenants, policy=policy_name)
    base = min(t.created for t in tasks)
    arrivals = sorted(((t.created - base) / load, i) for i, t in enumerate(tasks))
    duration = [max(t.deleted - t.created, 1.0) for t in tasks]
    departures: list = []
    started: dict[int, float] = {}
    arrive: dict[int, float] = {}
    rejected = 0
    util_t, util_v = [], []
    horizon = arrivals[-1][0] if arrivals else 0.0
    sample_every = max(horizon / samples, 1.0)
    next_sample = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    ai = passes = 0
    while ai < len(arrivals) or departures:
        now = min(arrivals[ai][0] if ai < len(arrivals) else math.inf, departures[0][0] if departures else math.inf)
        while next_sample <= now and next_sample <= horizon:
            util_t.append(next_sample)
            util_v.append(100.0 * sched.state.allocated_gpu_milli() / cap_gpu)
            next_sample += sample_every
        while departures and departures[0][0] <= now:
            _, i = heapq.heappop(departures)
            sched.release(f"t{i}")
        while ai < len(arrivals) and arrivals[ai][0] <= now:
            _, i = arrivals[ai]
            ai += 1
            w = Workload(f"t{i}", tenant_of(tasks[i].name, n_tenants), "user", "job", "normal", tasks[i].request,
                         now, duration[i])
            if sched.submit(w).ok:
                arrive[i] = now
            else:
                rejected += 1
        d = sched.schedule(now)
        passes += 1
        for w, _ in d.admitted:
            i = int(w.id[1:])
            started[i] = now
            heapq.heappush(departures, (now + duration[i], i))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    delay: dict[str, list] = {n: [] for n in names}
    slowdown: dict[str, list] = {n: [] for n in names}
    for i, s in started.items():
        n = tenant_of(tasks[i].name, n_tenants)
        delay[n].append(s - arrive[i])
        slowdown[n].append((s - arrive[i] + duration[i]) / duration[i])
    mean_delay = {n: (float(np.mean(v)) if v else 0.0) for n, v in delay.items()}
    mean_slowdown = {n: (float(np.mean(v)) if v else 1.0) for n, v in slowdown.items()}
    return {"policy": policy_name, "mode": "replay", "tenants": len(names), "tasks": len(tasks),
            "admitted": len(started), "rejected": rejected, "never_started": len(arrive) - len(started),
            "passes": passes, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load": load,
            "quota_factor": quota_factor,
            "utilisation_pct": [[round(a), round(b, 2)] for a, b in zip(util_t, util_v)],
            "mean_utilisation_pct": round(float(np.mean(util_v)) if util_v else 0.0, 2),
            "mean_queueing_delay_s": {n: round(v, 1) for n, v in mean_delay.items()},
            "mean_slowdown": {n: round(v, 3) for n, v in mean_slowdown.items()},
            # Jain's index over tenants of 1/mean slowdown: 1 = every tenant's work waits alike
            "jain_index": round(jain([1.0 / v for v in mean_slowdown.values()]), 4)}


def run_admission_bench(inventory: Inventory, tasks: list[Task], policy_name: str, n_pending: int = 10000,
                        n_tenants: int = 100, seed: int = FIRST_SEED) -> dict:
    """One pass over ``n_pending`` workloads sampled from the trace, from ``n_tenants`` tenants."""
    rng = np.random.default_rng(seed)
    cap_gpu = sum(len(n.gpus) for n in inventory.nodes) * 1000
    tenants = [Tenant(f"tenant-{k:03d}", {"any": Quota(gpu_milli=int(3 * cap_gpu / n_tenants))},
                      weight=1.0 + (k % 3), emergency_users={"oncall"}, high_users={"u"}) for k in range(n_tenants)]
    sched = Scheduler(inventory, tenants, policy=policy_name, preemption=True)
    picks = rng.integers(0, len(tasks), size=n_pending)
    prio = rng.choice(["normal", "high", "emergency"], size=n_pending, p=[0.8, 0.18, 0.02])
    t_submit = time.perf_counter()
    for j, k in enumerate(picks):
        p = str(prio[j])
        sched.submit(Workload(f"w{j}", f"tenant-{j % n_tenants:03d}", "oncall" if p == "emergency" else "u",
                              "job", p, tasks[k].request, float(j), 3600.0))
    submit_s = time.perf_counter() - t_submit
    t0, c0 = time.perf_counter(), time.process_time()
    d = sched.schedule(1e6)
    pass_s, pass_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"policy": policy_name, "pending": n_pending, "tenants": n_tenants, "admitted": len(d.admitted),
            "still_pending": len(d.pending), "submit_s": round(submit_s, 2), "schedule_pass_s": round(pass_s, 2),
            "schedule_pass_cpu_s": round(pass_cpu, 2), "preempted": len(d.preempt),
            "allocated_pct": round(100.0 * sched.state.allocated_gpu_milli() / cap_gpu, 2)}


# ---- command line -------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m job_runner.simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", required=True, help="node list CSV: sn,cpu_milli,memory_mib,gpu,model")
    ap.add_argument("--pods", required=True, help="pod list CSV: name,cpu_milli,memory_mib,num_gpu,gpu_milli,...")
    ap.add_argument("--policy", default="default",
                    help=f"placement policies, comma-separated: {', '.join(POLICIES)}")
    ap.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="number of seeds, from 42 (default 10)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per policy")
    ap.add_argument("--mode", choices=("inflation", "replay", "admission"), default="inflation")
    ap.add_argument("--tenants", type=int, default=10, help="replay: tenants (by hashing task names)")
    ap.add_argument("--quota-factor", type=float, default=0.3, help="replay: each tenant's GPU quota / capacity")
    ap.add_argument("--load", type=float, default=1.0, help="replay: arrivals this many times as dense as the trace")
    args = ap.parse_args(argv)
    args.policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    unknown = [p for p in args.policies if p not in POLICIES]
    if unknown:
        ap.error(f"unknown policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    if args.seeds < 1:
        ap.error("--seeds must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        inventory = Inventory.from_alibaba_csv(args.nodes)
        tasks = read_pods(args.pods)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.seeds))
    results = []
    for name in args.policies:
        if args.mode == "inflation":
            r = inflation_summary(inventory, tasks, name, seeds)
        elif args.mode == "replay":
            r = run_replay(inventory, tasks, name, args.tenants, args.quota_factor, args.load)
        else:
            r = run_admission_bench(inventory, tasks, name)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
    if not args.json:
        print_table(args, results)
    return 0


def print_table(args, results) -> None:
    if args.mode == "inflation":
        print(f"nodes={args.nodes} pods={args.pods} seeds={FIRST_SEED}..{FIRST_SEED + args.seeds - 1}")
        print(f"{'policy':<10} {'alloc%@100':>10} {'(std)':>6} {'alloc%@130':>10} {'(std)':>6} {'unalloc GPUs@100':>17} "
              f"{'decisions/s':>12} {'s/exp':>6}  (decisions per CPU-second; s/exp wall)")
        base = next((r for r in results if r["policy"] == "fgd"), None)
        for r in results:
            print(f"{r['policy']:<10} {r['alloc_pct_at_100']:>10.2f} {r['alloc_pct_at_100_std']:>6.2f} "
                  f"{r['alloc_pct_at_130']:>10.2f} {r['alloc_pct_at_130_std']:>6.2f} {r['unallocated_gpus_at_100']:>17.1f} "
                  f"{r['decisions_per_s']:>12d} {r['seconds_per_experiment']:>6.2f}")
        if results:
            print(f"floor at 100% (no placement can leave fewer GPUs unallocated, see allocation_floor_milli): "
                  f"{results[0]['floor_gpus_at_100']:.1f} GPUs (share slivers alone: {results[0]['share_floor_gpus_at_100']:.1f})")
        if base:
            for r in results:
                if r is not base and base["unallocated_gpus_at_100"]:
                    ratio = r["unallocated_gpus_at_100"] / base["unallocated_gpus_at_100"]
                    removed = waste_removed(r, base)
                    print(f"{r['policy']}: unallocated GPUs at 100% = {ratio:.3f} x fgd ({(1 - ratio) * 100:+.1f}% fewer)"
                          + (f"; removes {removed:.0%} of fgd's waste above the floor" if removed is not None else ""))
    elif args.mode == "replay":
        for r in results:
            print(f"policy {r['policy']}: {r['admitted']}/{r['tasks']} admitted ({r['never_started']} never started, "
                  f"{r['rejected']} rejected), {r['tenants']} tenants, load x{r['load']}, quota "
                  f"{r['quota_factor']:.0%} of the GPUs each; {r['passes']} passes in {r['wall_s']} s ({r['cpu_s']} CPU s)")
            print(f"  GPU utilisation % over time (mean {r['mean_utilisation_pct']}):",
                  " ".join(f"{v:.0f}" for _, v in r["utilisation_pct"]))
            print("  mean queueing delay s per tenant:",
                  ", ".join(f"{k}={v:.0f}" for k, v in r["mean_queueing_delay_s"].items()))
            print(f"  Jain's fairness index (1/mean slowdown per tenant): {r['jain_index']:.4f}")
    else:
        for r in results:
            print(f"policy {r['policy']}: {r['pending']} pending from {r['tenants']} tenants: submit {r['submit_s']} s, "
                  f"one schedule pass {r['schedule_pass_s']} s ({r['schedule_pass_cpu_s']} CPU s), admitted {r['admitted']}, "
                  f"GPU allocated {r['allocated_pct']}%")


if __name__ == "__main__":
    sys.exit(main())
