"""Allocator speed against a baseline revision, in the same process, and proof that no decision moved.

For each trace and seed, the inflation experiment of ``python -m job_runner.simulate`` (the paper's
arrival order, one task at a time, none departing) is run by the working tree's scheduling core and by
the scheduling core of a baseline git revision (``git archive REV job_runner/scheduling``, imported as
a separate package), alternately, in this one process. Printed per trace and policy: decisions per
CPU-second of each and their ratio, allocated % at 100% / 130% arrived, the longest experiment of the
working tree (wall seconds of the placement loop), and whether the two full decision sequences (node
and GPUs of every task, or "not placed") and allocated % are identical. Exit status 1 if any
sequence differs::

    python benchmarks/sched_speed.py [--baseline REV] [--policy default,fgd] [--seeds 1] [--traces a,b]

A trace is ``openb_pod_list_<name>.csv`` in ``--trace-dir`` (default ../shared/traces/alibaba-gpu-v2023);
without ``--traces`` every one there is run.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from job_runner import simulate  # noqa: E402
from job_runner import scheduling as current  # noqa: E402


def load_baseline(rev: str, into: Path):
    """The scheduling package of git revision ``rev``, importable as ``_sched_baseline``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "job_runner/scheduling"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "job_runner" / "scheduling").rename(into / "_sched_baseline")
    sys.path.insert(0, str(into))
    return importlib.import_module("_sched_baseline")


def convert(pkg, req):
    """The request as ``pkg``'s own SliceRequest (field by field)."""
    fields = {f: getattr(req, f) for f in req.__dataclass_fields__}
    return pkg.SliceRequest(**fields)


def run(pkg, nodes_csv, tasks, policy_name, seed, ratio=1.3):
    """simulate.run_inflation with ``pkg``'s core: (decisions, CPU s, alloc % @100, @130, wall s, sequence)."""
    inventory = pkg.Inventory.from_alibaba_csv(nodes_csv)
    reqs = [convert(pkg, t.request) for t in tasks]
    state = pkg.ClusterState(inventory)
    capacity = state.total_gpus * 1000
    target = pkg.TargetWorkload.from_requests(reqs) if policy_name in simulate.OFFLINE_TARGET else None
    policy = pkg.make_policy(policy_name, target, seed=seed)
    order = simulate.inflate(tasks, capacity, ratio, seed)
    seq = []
    arrived = allocated = 0
    at = {}
    c0, w0 = time.process_time(), time.perf_counter()
    for k in order:
        req = reqs[k]
        policy.observe(req)
        p = policy.place(state, req)
        if p is None:
            seq.append(None)
        else:
            state.allocate(req, p)
            allocated += tasks[k].gpu_milli
            seq.append((p.node, tuple(int(g) for g in p.gpus), p.mig))
        arrived += tasks[k].gpu_milli
        for pct in (100, 130):
            if pct not in at and arrived >= pct * capacity / 100:
                at[pct] = 100.0 * allocated / capacity
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    for pct in (100, 130):
        at.setdefault(pct, 100.0 * allocated / capacity)
    return len(order), cpu, at[100], at[130], wall, seq


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="HEAD", help="git revision to compare against (default HEAD)")
    ap.add_argument("--policy", default="default,fgd")
    ap.add_argument("--seeds", type=int, default=1, help="seeds from 42")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each implementation per seed; the least CPU time counts (the machine is shared)")
    ap.add_argument("--traces", default="", help="comma-separated trace names (default: all in --trace-dir)")
    ap.add_argument("--trace-dir", default=str(REPO.parent / "shared" / "traces" / "alibaba-gpu-v2023"))
    args = ap.parse_args(argv)
    tdir = Path(args.trace_dir)
    nodes_csv = str(tdir / "openb_node_list_gpu_node.csv")
    if args.traces:
        traces = [t.strip() for t in args.traces.split(",") if t.strip()]
    else:
        traces = sorted(p.stem.removeprefix("openb_pod_list_") for p in tdir.glob("openb_pod_list_*.csv"))
    policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    seeds = range(simulate.FIRST_SEED, simulate.FIRST_SEED + args.seeds)
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = load_baseline(args.baseline, Path(tmp))
        print(f"baseline {args.baseline}; seeds {seeds.start}..{seeds.stop - 1}; decisions per CPU-second "
              f"(process_time of the placement loop), same process, runs alternated, "
              f"least of {args.repeat} per seed")
        print(f"{'trace':<12} {'policy':<8} {'baseline/s':>10} {'now/s':>8} {'ratio':>6} {'alloc%@100':>11} "
              f"{'alloc%@130':>11} {'max wall s':>10}  decisions")
        totals = {p: [0, 0.0, 0.0] for p in policies}
        for trace in traces:
            tasks = simulate.read_pods(str(tdir / f"openb_pod_list_{trace}.csv"))
            for name in policies:
                n = cb = cn = 0.0
                same = True
                a100 = a130 = wall = 0.0
                for i, seed in enumerate(seeds):
                    # alternate which runs first, so neither always meets a warm or a cold cache
                    first, second = (base, current) if i % 2 == 0 else (current, base)
                    got = {id(base): [], id(current): []}
                    for _ in range(args.repeat):
                        got[id(first)].append(run(first, nodes_csv, tasks, name, seed))
                        got[id(second)].append(run(second, nodes_csv, tasks, name, seed))
                    rb, rn = (min(got[id(pkg)], key=lambda r: r[1]) for pkg in (base, current))
                    n += rn[0]
                    cb += rb[1]
                    cn += rn[1]
                    a100 += rn[2] / len(seeds)
                    a130 += rn[3] / len(seeds)
                    wall = max(wall, rn[4])
                    if rb[5] != rn[5] or rb[2] != rn[2] or rb[3] != rn[3]:
                        same = False
                        k = next((j for j, (x, y) in enumerate(zip(rb[5], rn[5])) if x != y), None)
                        was, now = (rb[5][k], rn[5][k]) if k is not None else ("", "")
                        print(f"  {trace} {name} seed {seed}: decision {k} differs: {was} vs {now}; "
                              f"alloc {rb[2]:.6f}/{rb[3]:.6f} vs {rn[2]:.6f}/{rn[3]:.6f}")
                differ += not same
                t = totals[name]
                t[0] += n
                t[1] += cb
                t[2] += cn
                print(f"{trace:<12} {name:<8} {n / cb:>10,.0f} {n / cn:>8,.0f} {cb / cn:>6.2f} {a100:>11.4f} "
                      f"{a130:>11.4f} {wall:>10.2f}  {'identical' if same else 'DIFFER'}", flush=True)
        for name, (n, cb, cn) in totals.items():
            print(f"{'all':<12} {name:<8} {n / cb:>10,.0f} {n / cn:>8,.0f} {cb / cn:>6.2f}")
    print("decision sequences: " + ("all identical" if not differ else f"{differ} trace/policy pairs DIFFER"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
