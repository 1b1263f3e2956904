"""ASHA against the full grid on a real training notebook (numpy MLP trained epoch by epoch on a seeded
synthetic 10-class data set, validation accuracy reported each epoch with ``report()``), through the real
aistack service (LocalExecutor, papermill kernels, SQLite): same notebook, same seeds, same parallelism,
one run. Also ``report()``'s cost per call and the ingest rate into SQLite, where each trial's slot time goes
(submit -> admitted -> runner process -> papermill imported -> first cell -> last cell -> runner exit -> job
final -> next trial submitted -> admitted; medians and sums over the trials, from the jobs' times in the
database and the runner's timing lines in each job's log), and the load average while each strategy ran.
Prints its figures (JSON last).

    .venv/bin/python benchmarks/experiments_asha.py [--parallelism 2] [--epoch-scale 40] [--seeds 0,1,2,3,4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nbformat  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from tests.job_service.helpers import DEPLOYMENT, ServiceProcess  # noqa: E402

TRAIN = r"""
import os
os.environ["OPENBLAS_NUM_THREADS"] = "1"; os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np
from job_runner import report
rng = np.random.default_rng(data_seed)
k, d, n = 10, 32, int(6000 * scale)
centers = rng.normal(0, 1.0, (k, d))
warp = rng.normal(0, 0.6, (d, d))
def make(m):
    y = rng.integers(0, k, m)
    x = centers[y] + rng.normal(0, 1.6, (m, d))
    return np.tanh(x @ warp) + 0.3 * x, y
xtr, ytr = make(n); xva, yva = make(2000)
w_rng = np.random.default_rng(init_seed)
W1 = w_rng.normal(0, 1 / np.sqrt(d), (d, hidden)); b1 = np.zeros(hidden)
W2 = w_rng.normal(0, 1 / np.sqrt(hidden), (hidden, k)); b2 = np.zeros(k)
def forward(x):
    h = np.maximum(0, x @ W1 + b1)
    z = h @ W2 + b2
    z -= z.max(1, keepdims=True)
    p = np.exp(z); p /= p.sum(1, keepdims=True)
    return h, p
for epoch in range(1, epochs + 1):
    order = w_rng.permutation(n)
    for i in range(0, n, 64):
        idx = order[i:i + 64]; x, y = xtr[idx], ytr[idx]
        h, p = forward(x)
        g = p; g[np.arange(len(y)), y] -= 1; g /= len(y)
        gW2 = h.T @ g + l2 * W2; gb2 = g.sum(0)
        gh = g @ W2.T; gh[h <= 0] = 0
        gW1 = x.T @ gh + l2 * W1; gb1 = gh.sum(0)
        W1 -= lr * gW1; b1 -= lr * gb1; W2 -= lr * gW2; b2 -= lr * gb2
    _, p = forward(xva)
    acc = float((p.argmax(1) == yva).mean())
    report(step=epoch, val_accuracy=acc)
"""

SPACE = {"lr": [0.003, 0.03, 0.3], "hidden": [8, 32, 128], "l2": [0.0, 0.003, 0.03]}
EPOCHS = 27


def notebook(scale: float) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(f"lr = 0.03\nhidden = 32\nl2 = 0.0\nepochs = 3\ndata_seed = 7\ninit_seed = 11\nscale = {scale}")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(TRAIN)]
    return json.loads(nbformat.writes(nb))


def run(s, api, strategy: str, parallelism: int, scale: float, seed: int) -> dict:
    body = {"notebook": notebook(scale), "profile": "cpu", "tenant": "team-a", "name": f"bench-{strategy}-{seed}",
            "space": SPACE, "objective": {"metric": "val_accuracy", "mode": "max"}, "strategy": strategy,
            "parallelism": parallelism, "budget": {"parameter": "epochs", "max": EPOCHS}, "seed": seed}
    if strategy == "asha":
        body["sampler"] = "grid"
    t0 = time.monotonic()
    r = s.post(api + "experiments", json=body)
    r.raise_for_status()
    eid = r.json()["id"]
    load = []  # the machine's 1-minute load average while it ran (shared machine: say what it was)
    while True:
        e = s.get(api + f"experiments/{eid}").json()
        load.append(os.getloadavg()[0])
        if e["state"] != "running":
            break
        time.sleep(0.25)  # the wall time's resolution
    wall = time.monotonic() - t0
    trials = e["trials"]
    # epochs trained: the recorded ones, plus for a trial stopped by the rule the epoch it was in when it
    # stopped (at its marker report() raises before recording that epoch; a cancel kills it mid-epoch)
    epochs = sum(len((t["metrics"] or {}).get("val_accuracy", [])) + (t["state"] == "pruned") for t in trials)
    finals = [t["value"] for t in trials if t["state"] == "completed" and t["last_step"] == EPOCHS]
    slots = breakdown(s, api, trials, parallelism)
    return {"strategy": strategy, "seed": seed, "state": e["state"], "trials": len(trials), "wall_s": round(wall, 1),
            "epochs": epochs, "best_final": max(finals) if finals else None, "best": e["best"],
            "pruned": sum(1 for t in trials if t["state"] == "pruned"),
            "pruned_last_steps": sorted(t["last_step"] for t in trials if t["state"] == "pruned"),
            "load_avg": {"mean": round(sum(load) / len(load), 2), "max": round(max(load), 2)},
            "slot_breakdown": slots}


# The runner's timing lines (job_runner/run_notebook.py): "startup: <what>, <age> s after the runner process
# started (at <epoch s>)" and "end: ..." — marks in the job's log, lined up with the job's times in the database.
MARKS = {"runner up": "runner_up", "papermill imported": "papermill_imported", "kernel up": "first_cell",
         "last cell done": "last_cell", "result written": "runner_exits"}
# A trial's slot, end to end, as consecutive segments (name, from mark, to mark). "submitted" is the job's
# created_at, "admitted" admitted_at, "running" started_at (written once the executor's start returned),
# "final" finished_at; "process" is the runner's process start (its first mark's time minus its age);
# "next admitted" is when the trial that took this slot was admitted.
SEGMENTS = [
    ("admitted -> runner process started", "admitted", "process"),
    ("process -> runner up (python, imports)", "process", "runner_up"),
    ("runner up -> papermill imported", "runner_up", "papermill_imported"),
    ("papermill imported -> first cell (kernel start)", "papermill_imported", "first_cell"),
    ("first cell -> last cell (the notebook's work)", "first_cell", "last_cell"),
    ("last cell -> runner exits (save, kernel shutdown)", "last_cell", "runner_exits"),
    ("runner exits -> job final in the database", "runner_exits", "final"),
    ("job final -> next trial submitted", "final", "next_submitted"),
    ("next submitted -> next admitted", "next_submitted", "next_admitted"),
]


def _epoch(iso: str | None) -> float | None:
    import datetime as dt
    return None if not iso else dt.datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=dt.timezone.utc).timestamp()


def marks_of(log: str) -> dict:
    out = {}
    for line in log.splitlines():
        if "s after the runner process started (at " not in line:
            continue
        for k, name in MARKS.items():
            if (f"startup: {k}" in line or f"end: {k}" in line) and name not in out:
                head, at = line.rsplit("(at ", 1)
                age = float(head.rsplit(", ", 1)[1].split()[0])
                out[name] = float(at.rstrip(")").strip())
                out.setdefault("process", out[name] - age)
    return out


def breakdown(s, api, trials, parallelism: int) -> dict:
    """Where each trial's slot time goes (medians and sums over the trials, seconds). The slot a trial frees
    goes to the next trial submitted after it ended (trials in submission order, ends in time order)."""
    rows = []
    for t in trials:
        if not t["job_id"]:
            continue
        j = s.get(api + f"jobs/{t['job_id']}").json()
        m = marks_of(s.get(api + f"jobs/{t['job_id']}/logs").text)
        m.update(submitted=_epoch(j["created_at"]), admitted=_epoch(j["admitted_at"]),
                 running=_epoch(j["started_at"]), final=_epoch(j["finished_at"]))
        rows.append(m)
    by_submit = sorted(rows, key=lambda m: m["submitted"])
    by_final = sorted((m for m in rows if m.get("final")), key=lambda m: m["final"])
    for done, nxt in zip(by_final, by_submit[parallelism:]):  # the k-th slot freed -> the (P+k)-th trial
        done["next_submitted"], done["next_admitted"] = nxt["submitted"], nxt["admitted"]
    out = {}
    for name, a, b in SEGMENTS:
        xs = [m[b] - m[a] for m in rows if m.get(a) is not None and m.get(b) is not None]
        out[name] = {"median": median(xs), "sum": round(sum(xs), 1), "n": len(xs)}
    slot = [m["next_admitted"] - m["admitted"] for m in rows if m.get("next_admitted")]
    out["slot (admitted -> next trial admitted)"] = {"median": median(slot), "sum": round(sum(slot), 1),
                                                     "n": len(slot)}
    # what early stopping cannot save: the slot minus the notebook's own work (its cells)
    fixed = [m["next_admitted"] - m["admitted"] - (m["last_cell"] - m["first_cell"]) for m in rows
             if m.get("next_admitted") and m.get("last_cell") and m.get("first_cell")]
    out["fixed (slot minus the cells' work)"] = {"median": median(fixed), "sum": round(sum(fixed), 1),
                                                 "n": len(fixed)}
    return out


def median(xs):
    xs = sorted(xs)
    return round(xs[len(xs) // 2], 3) if xs else None


def report_overhead() -> float:
    from job_runner.report import Reporter
    with tempfile.TemporaryDirectory() as d:
        r = Reporter(os.path.join(d, "m.jsonl"))
        n = 50000
        t0 = time.perf_counter()
        for i in range(n):
            r.report(step=i, val_accuracy=0.5, loss=0.1)
        r.flush()
        return (time.perf_counter() - t0) / n * 1e6


def ingest_rate() -> float:
    from job_runner.db import Job, open_database, store_notebooks
    from job_runner.experiments import ingest
    with tempfile.TemporaryDirectory() as d:
        db = open_database(f"sqlite:///{d}/a.sqlite")
        with db.session() as s:
            sha = store_notebooks(s, ["{}"])[0]
            job = Job(name="j", user="u", tenant="t", profile="cpu", notebook_sha=sha, state="running")
            s.add(job)
            s.flush()
            jid = job.id
        total, t0 = 0, time.perf_counter()
        for b in range(20):  # 20 batches of 5,000 points, as the pass writes them
            lines = b"".join(json.dumps({"step": b * 2500 + i, "t": 0, "m": {"acc": 0.1, "loss": 0.2}}).encode()
                             + b"\n" for i in range(2500))
            total += ingest.ingest(db, [(jid, 1, ingest.parse_jsonl(lines), "file", (b + 1) * len(lines), None)])
        return total / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--epoch-scale", type=float, default=40.0, help="training set size factor (epoch length)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="ASHA's seeds (the grid's shuffle), comma-separated")
    a = ap.parse_args()
    seeds = [int(x) for x in a.seeds.split(",")]
    out = {"asha": [], "report_us_per_call": round(report_overhead(), 2), "ingest_points_per_s": round(ingest_rate())}
    print(f"report(): {out['report_us_per_call']} us per call; ingest: {out['ingest_points_per_s']} points/s",
          flush=True)
    d = tempfile.mkdtemp(prefix="aistack-bench-exp-")
    dep = os.path.join(d, "deployment.yaml")
    with open(dep, "w") as f:
        yaml.safe_dump(DEPLOYMENT, f)
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 1},
           "ExperimentSettings": {"pass_interval_s": 0.25}}
    svc = ServiceProcess(d, f"sqlite:///{d}/aistack.sqlite", dep, config=cfg).start()
    try:
        s = requests.Session()
        s.headers["Authorization"] = f"token {svc.session().headers['Authorization'].split()[1]}"
        # the grid once (its epochs do not depend on the seed, only its order does), ASHA once per seed:
        # the seed shuffles the grid's order, which decides which trials meet a rung with few others before them
        for strategy, seed in [("grid", seeds[0])] + [("asha", x) for x in seeds]:
            r = run(s, svc.api, strategy, a.parallelism, a.epoch_scale, seed)
            if strategy == "grid":
                out["grid"] = r
            else:
                out["asha"].append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "slot_breakdown"}), flush=True)
            print(f"{strategy} (seed {seed}): where a trial's slot goes (median s, sum s over {r['trials']} trials)")
            for name, v in r["slot_breakdown"].items():
                print(f"  {name:55s} {v['median']!s:>7} {v['sum']!s:>8}")
    finally:
        svc.stop()
    g = out["grid"]
    for h in out["asha"]:
        h["epochs_ratio"] = round(h["epochs"] / g["epochs"], 3)
        h["wall_ratio"] = round(h["wall_s"] / g["wall_s"], 3)
        h["accuracy_gap_points"] = round(100 * (g["best_final"] - (h["best_final"] or 0)), 2)
        print(f"ASHA seed {h['seed']}: {h['epochs_ratio']:.0%} of the grid's epochs, {h['wall_ratio']:.0%} of its "
              f"wall time, best final accuracy {h['best_final']} vs grid {g['best_final']} "
              f"({h['accuracy_gap_points']} points)")
    for k in ("epochs_ratio", "wall_ratio", "accuracy_gap_points"):
        xs = [h[k] for h in out["asha"]]
        out[k] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    out["parallelism"], out["seeds"] = a.parallelism, seeds
    print(f"ASHA over {len(seeds)} seeds: epochs {out['epochs_ratio']}, wall {out['wall_ratio']}, "
          f"gap {out['accuracy_gap_points']} (median, min, max)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
