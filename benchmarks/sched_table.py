"""Markdown table of the allocation benchmark (docs/scheduling.md) from the ``--json`` output of
``python -m job_runner.simulate`` (one ``<trace>.jsonl`` per trace in a folder, as
benchmarks/sched_trace_table.sh writes them)::

    python benchmarks/sched_table.py RESULTS_DIR

Published = the FGD paper's simulator's own results (hkust-adsl/kubernetes-scheduler-simulator,
experiments/analysis/expected_results/analysis_allo_discrete.csv, mean of its 10 seeds), allocated %
of GPU capacity at 100% / 130% arrived. Waste removed = (U_fgd - U_default) / (U_fgd - floor), U =
GPUs unallocated at 100% arrived.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PUBLISHED_FGD = {
    "default": (95.23, 95.39), "gpushare40": (93.96, 94.15), "gpushare60": (91.25, 91.40),
    "multigpu20": (95.53, 95.65), "multigpu30": (96.36, 96.46), "gpuspec10": (94.66, 94.95),
    "gpuspec20": (94.66, 94.84), "gpuspec25": (93.91, 94.74), "cpu100": (95.21, 95.35),
}
ORDER = list(PUBLISHED_FGD)


def load(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.setdefault(f.stem, {})[r["policy"]] = r
    return out


def table(results: dict) -> str:
    rows = ["| trace | published FGD @100 / @130 | our `fgd` (± std) | fgd − published | **`default`** (± std) "
            "| default − published | best-fit | unallocated GPUs @100: fgd / default | floor | waste above floor "
            "removed: vs fgd / vs published | s per experiment fgd / default (max) | decisions per CPU-s fgd / default |",
            "|" + "---|" * 12]
    traces = [t for t in ORDER if t in results] + sorted(t for t in results if t not in ORDER)
    for t in traces:
        r = results[t]
        f, d, b = r.get("fgd"), r.get("default"), r.get("best-fit")
        if not (f and d):
            continue
        pub = PUBLISHED_FGD.get(t)
        gpus = d["gpus"]
        floor = d["floor_gpus_at_100"]
        u_f, u_d = f["unallocated_gpus_at_100"], d["unallocated_gpus_at_100"]
        wr_f = (u_f - u_d) / (u_f - floor) if u_f > floor else float("nan")
        if pub:
            u_p = gpus * (1 - pub[0] / 100)
            wr_p = (u_p - u_d) / (u_p - floor) if u_p > floor else float("nan")
            pub_s = f"{pub[0]:.2f} / {pub[1]:.2f}"
            fd = f"{f['alloc_pct_at_100'] - pub[0]:+.2f} / {f['alloc_pct_at_130'] - pub[1]:+.2f}"
            dd = f"**{d['alloc_pct_at_100'] - pub[0]:+.2f} / {d['alloc_pct_at_130'] - pub[1]:+.2f}**"
            wp = f"{wr_p:.0%}"
        else:
            pub_s = fd = dd = wp = "n/a"
        rows.append(
            f"| {t} | {pub_s} | {f['alloc_pct_at_100']:.2f} / {f['alloc_pct_at_130']:.2f} "
            f"(±{f['alloc_pct_at_100_std']:.2f} / ±{f['alloc_pct_at_130_std']:.2f}) | {fd} "
            f"| **{d['alloc_pct_at_100']:.2f} / {d['alloc_pct_at_130']:.2f}** "
            f"(±{d['alloc_pct_at_100_std']:.2f} / ±{d['alloc_pct_at_130_std']:.2f}) | {dd} "
            f"| {b['alloc_pct_at_100']:.2f} / {b['alloc_pct_at_130']:.2f} | {u_f:.1f} / {u_d:.1f} | {floor:.1f} "
            f"| {wr_f:.0%} / {wp} | {f['seconds_per_experiment']:.1f} / {d['seconds_per_experiment']:.1f} "
            f"({d['max_seconds_per_experiment']:.1f}) | {f['decisions_per_s']:,} / {d['decisions_per_s']:,} |"
            if b else "")
    return "\n".join(x for x in rows if x)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    print(table(load(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
