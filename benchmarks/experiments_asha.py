"""ASHA against the full grid on a real training notebook (numpy MLP trained epoch by epoch on a seeded
synthetic 10-class data set, validation accuracy reported each epoch with ``report()``), through the real
aistack service (LocalExecutor, papermill kernels, SQLite): same notebook, same seeds, same parallelism,
one run. Also ``report()``'s cost per call and the ingest rate into SQLite. Prints its figures (JSON last).

    .venv/bin/python benchmarks/experiments_asha.py [--parallelism 2] [--epoch-scale 1.0]
"""
from __future__ import annotations

import argparse
import json
import os
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


def run(s, api, strategy: str, parallelism: int, scale: float) -> dict:
    body = {"notebook": notebook(scale), "profile": "cpu", "tenant": "team-a", "name": f"bench-{strategy}",
            "space": SPACE, "objective": {"metric": "val_accuracy", "mode": "max"}, "strategy": strategy,
            "parallelism": parallelism, "budget": {"parameter": "epochs", "max": EPOCHS}, "seed": 3}
    if strategy == "asha":
        body["sampler"] = "grid"
    t0 = time.monotonic()
    r = s.post(api + "experiments", json=body)
    r.raise_for_status()
    eid = r.json()["id"]
    while True:
        e = s.get(api + f"experiments/{eid}").json()
        if e["state"] != "running":
            break
        time.sleep(1.0)
    wall = time.monotonic() - t0
    trials = e["trials"]
    # epochs trained: the recorded ones, plus for a trial stopped by the rule the epoch it was in when it
    # stopped (at its marker report() raises before recording that epoch; a cancel kills it mid-epoch)
    epochs = sum(len((t["metrics"] or {}).get("val_accuracy", [])) + (t["state"] == "pruned") for t in trials)
    startup = [startup_of(s.get(api + f"jobs/{t['job_id']}/logs").text) for t in trials if t["job_id"]]
    finals = [t["value"] for t in trials if t["state"] == "completed" and t["last_step"] == EPOCHS]
    return {"strategy": strategy, "state": e["state"], "trials": len(trials), "wall_s": round(wall, 1),
            "epochs": epochs, "best_final": max(finals) if finals else None, "best": e["best"],
            "pruned": sum(1 for t in trials if t["state"] == "pruned"),
            "pruned_last_steps": sorted(t["last_step"] for t in trials if t["state"] == "pruned"),
            "startup_median_s": {k: median([x[k] for x in startup if k in x]) for k in STARTUP}}


STARTUP = {"runner up": "runner_up", "papermill imported": "papermill_imported", "kernel up": "kernel_up"}


def startup_of(log: str) -> dict:
    """Seconds from the runner process's start to its startup lines (job_runner/run_notebook.py)."""
    out = {}
    for line in log.splitlines():
        for k, name in STARTUP.items():
            if f"startup: {k}" in line and "s after the runner process started" in line:
                out[k] = float(line.rsplit(", ", 1)[1].split()[0])
    return out


def median(xs):
    xs = sorted(xs)
    return round(xs[len(xs) // 2], 2) if xs else None


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
    ap.add_argument("--epoch-scale", type=float, default=1.0, help="training set size factor (epoch length)")
    a = ap.parse_args()
    out = {"report_us_per_call": round(report_overhead(), 2), "ingest_points_per_s": round(ingest_rate())}
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
        for strategy in ("grid", "asha"):
            out[strategy] = run(s, svc.api, strategy, a.parallelism, a.epoch_scale)
            print(json.dumps(out[strategy]), flush=True)
    finally:
        svc.stop()
    g, h = out["grid"], out["asha"]
    out["epochs_ratio"] = round(h["epochs"] / g["epochs"], 3)
    out["wall_ratio"] = round(h["wall_s"] / g["wall_s"], 3)
    out["accuracy_gap_points"] = round(100 * (g["best_final"] - (h["best_final"] or 0)), 2)
    out["parallelism"] = a.parallelism
    print(f"ASHA: {out['epochs_ratio']:.0%} of the grid's epochs, {out['wall_ratio']:.0%} of its wall time, "
          f"best final accuracy {h['best_final']} vs grid {g['best_final']} ({out['accuracy_gap_points']} points)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
