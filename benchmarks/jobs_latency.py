"""Submission-to-running latency of a notebook job, and its total time against papermill run directly.

  .venv/bin/python benchmarks/jobs_latency.py [--runs 5]

Same small notebook (3 cells), same machine, same Python:
  - baseline: the `papermill in.ipynb out.ipynb` command, timed from launch to exit; "first cell" is the
    first cell's papermill start time in the output notebook.
  - job: `POST jobs` to the real service (`python -m aistack_hub.service`, SQLite, LocalExecutor), timed
    from the POST to the first cell starting (the runner's progress) and to the job's final state (polling
    `GET jobs/{id}` every 20 ms).
Prints the medians and the ratio job total / papermill total (goal <= 1.2).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "job_service"))

import requests  # noqa: E402
import yaml  # noqa: E402
from helpers import SERVICE_TOKEN, ServiceProcess, make_notebook  # noqa: E402

NOTEBOOK = make_notebook("import math\nx = sum(math.sqrt(i) for i in range(10000))",
                         "print('x =', round(x, 2))", "y = [i * i for i in range(1000)]\nlen(y)", params="n = 1")
DEPLOYMENT = {"tenants": [{"name": "bench"}],
              "profiles": [{"slug": "cpu", "request": {"kind": "cpu", "cpu_milli": 100}}],
              "inventory": [{"name": "node", "cpu_milli": 16000, "memory_mib": 65536, "gpus": 0}]}


def iso_epoch(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def papermill_direct(tmp: str, runs: int):
    path = os.path.join(tmp, "in.ipynb")
    with open(path, "w") as f:
        json.dump(NOTEBOOK, f)
    papermill = os.path.join(os.path.dirname(sys.executable), "papermill")
    totals, firsts = [], []
    for i in range(runs):
        out = os.path.join(tmp, f"out-{i}.ipynb")
        t0 = time.time()
        subprocess.run([papermill, path, out, "-p", "n", str(i), "--no-progress-bar"], check=True,
                       capture_output=True)
        totals.append(time.time() - t0)
        with open(out) as f:
            nb = json.load(f)
        first = min(iso_epoch(c["metadata"]["papermill"]["start_time"]) for c in nb["cells"]
                    if c["metadata"].get("papermill", {}).get("start_time"))
        firsts.append(first - t0)
    return totals, firsts


def via_service(tmp: str, runs: int):
    dep = os.path.join(tmp, "deployment.yaml")
    with open(dep, "w") as f:
        yaml.safe_dump(DEPLOYMENT, f)
    svc = ServiceProcess(os.path.join(tmp, "svc"), f"sqlite:///{tmp}/bench.sqlite", dep).start()
    s = requests.Session()
    s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
    totals, firsts = [], []
    try:
        for i in range(runs):
            t0 = time.time()
            r = s.post(svc.api + "jobs", json={"notebook": NOTEBOOK, "profile": "cpu", "tenant": "bench",
                                               "parameters": {"n": i}})
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            first = None
            while True:
                j = s.get(f"{svc.api}jobs/{job_id}").json()
                if first is None and (j.get("progress") or {}).get("first_cell_at"):
                    first = j["progress"]["first_cell_at"] - t0
                if j["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.02)
            total = time.time() - t0
            assert j["state"] == "succeeded", j
            totals.append(total)
            firsts.append(j["progress"]["first_cell_at"] - t0 if first is None else first)
    finally:
        svc.stop()
    return totals, firsts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-latency-")
    pm_total, pm_first = papermill_direct(tmp, args.runs)
    job_total, job_first = via_service(tmp, args.runs)
    med = statistics.median
    print(f"runs: {args.runs} each, notebook of 4 cells (with parameters)")
    print(f"papermill directly : first cell after {med(pm_first):.2f} s, total {med(pm_total):.2f} s (median)")
    print(f"job via the service: first cell after {med(job_first):.2f} s, total {med(job_total):.2f} s (median)")
    print(f"ratio job/papermill total: {med(job_total) / med(pm_total):.3f} (goal <= 1.2); "
          f"submission->first cell overhead {med(job_first) - med(pm_first):+.2f} s")
    return {"papermill": {"total": pm_total, "first": pm_first}, "job": {"total": job_total, "first": job_first}}


if __name__ == "__main__":
    main()
