"""Latency of the job service: a job's submission to running against papermill (``run``), and the API's
answer time while heavy work goes on (``api``).

  .venv/bin/python benchmarks/jobs_latency.py [run] [--runs 5]
  .venv/bin/python benchmarks/jobs_latency.py api [--requests 400] [--notebook-workers 2] [--switch-interval-s S]

``run``:
Same small notebook (3 cells), same machine, same Python:
  - baseline: the `papermill in.ipynb out.ipynb` command, timed from launch to exit; "first cell" is the
    first cell's papermill start time in the output notebook.
  - job: `POST jobs` to the real service (`python -m aistack_hub.service`, SQLite, LocalExecutor), timed
    from the POST to the first cell starting (the runner's progress) and to the job's final state (polling
    `GET jobs/{id}` every 20 ms).
Prints the medians and the ratio job total / papermill total (goal <= 1.2).

``api``: p50/p99 of `GET jobs?limit=50` against the real service process (SQLite, NoopExecutor, the hub's
token), requests one after the other from this process, in three phases:
  (a) idle;
  (b) while 16 MiB notebooks are inspected (`POST jobs/inspect`, back to back from another thread; only the
      answers that began and ended during an inspection count);
  (c) while scheduling passes over 10,000 pending jobs run: 64 nodes x 8 GPUs full of running quarter-GPU
      jobs (1,024 = the 4 tenants' quotas; NoopExecutor with a long duration), 10,000 more queued behind
      them, a pass every 0.2 s.
Prints each phase's figures and its ratio to the idle baseline; goal p99 < 100 ms in (b) and (c).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "job_service"))
sys.path.insert(0, HERE)

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


# ------------------------------------------------------------------------------------------------ api
# jobs_throughput's pool: 64 nodes x 8 GPUs, quarter-GPU jobs of 4 tenants whose quotas (64 GPUs each) let
# 1,024 run; the 10,000 after them stay pending (on quota) and every pass goes over them.
PENDING, FITTING = 10_000, 1024


def big_notebook(mib: float = 15.5) -> dict:
    """A notebook of many small cells whose submission body is about ``mib`` MiB (under the 16 MiB limit)."""
    line = "x = [" + ",".join(str(i) for i in range(60)) + "]\n"
    cell = line * 4
    n = int(mib * 2**20 / (len(json.dumps(cell)) + 120))
    return make_notebook(*([cell] * n), params="n = 1")


def percentile(sorted_ms: list, q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))]


def sample_get(s, api: str, n: int, counts=lambda t0, t1: True) -> list:
    """Milliseconds of ``n`` answers of GET jobs that ``counts(start, end)`` (perf_counter times)."""
    out = []
    while len(out) < n:
        t0 = time.perf_counter()
        r = s.get(api + "jobs", params={"limit": 50})
        t1 = time.perf_counter()
        assert r.status_code == 200, r.text[:300]
        if counts(t0, t1):
            out.append((t1 - t0) * 1000)
    return sorted(out)


class Inspections(threading.Thread):
    """POST jobs/inspect of a big notebook, back to back; ``busy(t0, t1)``: was one in flight throughout."""

    def __init__(self, api: str, body: bytes):
        super().__init__(daemon=True)
        self.api, self.body = api, body
        self.spans: list[tuple[float, float]] = []
        self.current: float | None = None
        self.stop = threading.Event()

    def run(self):
        s = requests.Session()
        s.headers.update({"Authorization": f"token {SERVICE_TOKEN}", "Content-Type": "application/json"})
        while not self.stop.is_set():
            self.current = time.perf_counter()
            r = s.post(self.api + "jobs/inspect", data=self.body)
            assert r.status_code == 200, r.text[:300]
            self.spans.append((self.current, time.perf_counter()))
            self.current = None

    def busy(self, t0: float, t1: float) -> bool:
        cur = self.current
        return (cur is not None and cur <= t0) or any(a <= t0 and t1 <= b for a, b in self.spans[-3:])


def pass_metrics(svc) -> tuple[float, float]:
    """(count, seconds) of the scheduling passes so far, from the service's /metrics."""
    text = requests.get(svc.url + "metrics", timeout=30, headers={"Authorization": f"token {SERVICE_TOKEN}"}).text
    found = dict(re.findall(r"^aistack_scheduler_tick_seconds_(count|sum) (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def api_latency(tmp: str, n: int, workers: int, switch_interval_s: float | None = None) -> dict:
    from jobs_throughput import DEPLOYMENT as POOL, insert_jobs

    from job_runner.db import open_database
    from job_runner.db.tenants import seed_tenants
    from aistack_hub.config import DeploymentConfig

    dep = os.path.join(tmp, "pool.yaml")
    with open(dep, "w") as f:
        yaml.safe_dump(POOL, f)
    url = f"sqlite:///{tmp}/api.sqlite"
    db = open_database(url)
    seed_tenants(db, DeploymentConfig.from_dict(POOL).tenants)
    insert_jobs(db, 200, state="succeeded")  # something to list in every phase
    db.dispose()
    cfg = {"Controller": {"tick_interval_s": 0.2},
           "NoopExecutor": {"duration_s": 86400.0},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor",
                              "notebook_workers": workers,
                              **({"switch_interval_s": switch_interval_s} if switch_interval_s else {})}}
    svc = ServiceProcess(os.path.join(tmp, "api-svc"), url, dep, config=cfg).start()
    s = requests.Session()
    s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
    out = {}
    try:
        # warm up: the notebook workers have started and imported nbformat/papermill once this answers
        assert s.post(svc.api + "jobs/inspect", json={"notebook": make_notebook("1")}).status_code == 200
        sample_get(s, svc.api, 50)
        out["idle"] = sample_get(s, svc.api, n)

        body = json.dumps({"notebook": big_notebook()}).encode()
        insp = Inspections(svc.api, body)
        insp.start()
        out["inspect"] = sample_get(s, svc.api, n, insp.busy)
        insp.stop.set()
        insp.join()
        out["inspect_s"] = sorted(b - a for a, b in insp.spans)
        out["body_mib"] = len(body) / 2**20

        db = open_database(url)
        insert_jobs(db, FITTING + PENDING)
        db.dispose()
        deadline = time.time() + 600
        while time.time() < deadline:  # until the pool is full and the rest waits
            running = len(s.get(svc.api + "jobs", params={"state": "running", "limit": 1}).json()["jobs"])
            queued = s.get(svc.api + "jobs", params={"state": "queued", "limit": 1}).json()["jobs"]
            if running and queued and queued[0].get("queue_position"):
                break
            time.sleep(0.5)
        c0, s0, t0 = *pass_metrics(svc), time.perf_counter()
        out["pass"] = sample_get(s, svc.api, n)
        c1, s1, t1 = *pass_metrics(svc), time.perf_counter()
        out["passes"] = (c1 - c0, (s1 - s0) / max(1.0, c1 - c0), (s1 - s0) / (t1 - t0))
    finally:
        svc.stop()
    return out


def print_api(res: dict, workers: int):
    idle = res["idle"]
    p50, p99 = statistics.median(idle), percentile(idle, 0.99)
    print(f"GET jobs?limit=50, {len(idle)} answers per phase, notebook_workers={workers}")
    print(f"(a) idle                  : p50 {p50:6.1f} ms  p99 {percentile(idle, 0.99):6.1f} ms")
    for key, label in (("inspect", "(b) 16 MiB inspection   "), ("pass", "(c) 10k-pending passes  ")):
        v = res[key]
        q50, q99 = statistics.median(v), percentile(v, 0.99)
        print(f"{label}: p50 {q50:6.1f} ms  p99 {q99:6.1f} ms  (x{q50 / p50:.1f} / x{q99 / p99:.1f} of idle; "
              f"goal p99 < 100 ms: {'met' if q99 < 100 else 'MISSED'})")
    insp = res["inspect_s"]
    print(f"    (b): {len(insp)} inspections of a {res['body_mib']:.1f} MiB body, median {statistics.median(insp):.1f} s each")
    count, mean, busy = res["passes"]
    print(f"    (c): {count:.0f} passes during the phase, {mean:.2f} s each, a pass running {100 * busy:.0f}% of the time")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=("run", "api"), default="run")
    ap.add_argument("--runs", type=int, default=5, help="run: jobs (and papermill runs) to time")
    ap.add_argument("--requests", type=int, default=400, help="api: answers of GET jobs per phase")
    ap.add_argument("--notebook-workers", type=int, default=2,
                    help="api: AIStackService.notebook_workers (0: notebook work in threads, for comparison)")
    ap.add_argument("--switch-interval-s", type=float, default=None,
                    help="api: AIStackService.switch_interval_s (default: the service's)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-latency-")
    if args.what == "api":
        res = api_latency(tmp, args.requests, args.notebook_workers, args.switch_interval_s)
        print_api(res, args.notebook_workers)
        return res
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
