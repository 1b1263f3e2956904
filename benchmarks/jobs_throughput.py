"""Throughput of the job service's scheduling loop, and `GET jobs` latency with a big table.

  .venv/bin/python benchmarks/jobs_throughput.py [--jobs 10000] [--list-jobs 100000] [--db-url URL]

1. Admission + dispatch: N queued jobs (inserted straight into the database), the real scheduling loop
   (`job_runner.controller.Controller` + the scheduling core) with the NoopExecutor; prints jobs admitted and
   dispatched (started on the executor, state `running`) per second, and jobs finished per second.
2. `GET jobs`: M jobs in the database, the real service process (`python -m aistack_hub.service`),
   authenticated with the hub's token; prints p50/p95 of `GET jobs?limit=50` (newest page, a filtered
   page, a deep keyset page) over 200 requests each.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import nbformat  # noqa: E402

from aistack_hub.config import DeploymentConfig  # noqa: E402
from job_runner.db.tenants import seed_tenants  # noqa: E402
from job_runner.db import Job, open_database, store_notebooks, utcnow  # noqa: E402

DEPLOYMENT = {
    "tenants": [{"name": f"team-{i}", "quotas": {"any": {"gpu_milli": 64000}}} for i in range(4)],
    "profiles": [{"slug": "gpu-quarter", "request": {"kind": "share", "gpu_milli": 250}},
                 {"slug": "cpu", "request": {"kind": "cpu", "cpu_milli": 100}}],
    "inventory": [{"name": "node", "count": 64, "cpu_milli": 128000, "memory_mib": 1 << 20, "gpus": 8,
                   "gpu_model": "A100-80GB"}],
}
NOTEBOOK = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")]))


def insert_jobs(db, n: int, state: str = "queued", batch: int = 5000):
    from sqlalchemy import insert

    now = utcnow()
    request = {"kind": "share", "gpu_milli": 250}
    with db.session() as s:
        sha = store_notebooks(s, [NOTEBOOK])[0]  # stored once; the bulk rows point at it
    for start in range(0, n, batch):
        rows = [dict(name=f"job-{i}", user=f"user-{i % 50}", tenant=f"team-{i % 4}", profile="gpu-quarter",
                     priority="normal", state=state, notebook_sha=sha, parameters={}, retry_on=[], request=request,
                     attempt=0, max_retries=0, cancel_requested=0, enqueued=0, created_at=now, updated_at=now)
                for i in range(start, min(n, start + batch))]
        with db.session() as s:
            s.execute(insert(Job), rows)


def bench_throughput(db_url: str, n: int) -> dict:
    from job_runner.executors.noop import NoopExecutor
    from job_runner.controller import Controller

    db = open_database(db_url)
    dep = DeploymentConfig.from_dict(DEPLOYMENT)
    seed_tenants(db, dep.tenants)
    insert_jobs(db, n)
    queue = Controller(db, dep, NoopExecutor(), tick_interval_s=0.0)

    async def run():
        t0 = time.perf_counter()
        dispatched_at = finished_at = None
        ticks = 0
        while True:
            await queue.tick()
            ticks += 1
            with db.read() as s:
                counts = dict(s.query(Job.state, __import__("sqlalchemy").func.count()).group_by(Job.state).all())
            if dispatched_at is None and counts.get("queued", 0) == 0 and counts.get("admitted", 0) == 0:
                dispatched_at = time.perf_counter() - t0
            if counts.get("succeeded", 0) == n:
                finished_at = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > 1800:
                raise SystemExit(f"gave up: {counts}")
        return dispatched_at, finished_at, ticks

    dispatched, finished, ticks = asyncio.run(run())
    db.dispose()
    return {"jobs": n, "dispatch_s": dispatched, "dispatch_per_s": n / dispatched, "finish_s": finished,
            "finish_per_s": n / finished, "ticks": ticks}


def bench_list(db_url: str, m: int, deployment_path: str, data_dir: str) -> dict:
    import requests

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "job_service"))
    from helpers import SERVICE_TOKEN, ServiceProcess  # noqa: E402

    db = open_database(db_url)
    seed_tenants(db, DeploymentConfig.from_dict(DEPLOYMENT).tenants)
    insert_jobs(db, m, state="succeeded")
    db.dispose()
    os.makedirs(data_dir, exist_ok=True)
    cfg = {"AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}
    svc = ServiceProcess(data_dir, db_url, deployment_path, config=cfg).start()
    s = requests.Session()
    s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
    out = {}
    try:
        deep = m // 2
        for label, params in (("newest page", {"limit": 50}),
                              ("user filter", {"limit": 50, "user": "user-7"}),
                              ("state+tenant filter", {"limit": 50, "state": "succeeded", "tenant": "team-2"}),
                              (f"keyset page before={deep}", {"limit": 50, "before": deep})):
            for _ in range(10):  # warm up
                s.get(svc.api + "jobs", params=params)
            times = []
            for _ in range(200):
                t = time.perf_counter()
                r = s.get(svc.api + "jobs", params=params)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and len(r.json()["jobs"]) == 50, r.text[:300]
            times.sort()
            out[label] = {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1]}
    finally:
        svc.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--list-jobs", type=int, default=100_000)
    ap.add_argument("--db-url", default=None, help="default: a fresh SQLite file; PostgreSQL: an empty database")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-bench-")
    import yaml

    dep_path = os.path.join(tmp, "deployment.yaml")
    with open(dep_path, "w") as f:
        yaml.safe_dump(DEPLOYMENT, f)
    url1 = args.db_url or f"sqlite:///{tmp}/throughput.sqlite"
    print(f"db: {url1.split(':')[0]}; inventory: 64 nodes x 8 GPUs, jobs of 1/4 GPU (2048 fit at once)")
    r = None
    if args.jobs:
        r = bench_throughput(url1, args.jobs)
        print(f"admission+dispatch: {r['jobs']} queued jobs -> running in {r['dispatch_s']:.2f} s "
              f"= {r['dispatch_per_s']:.0f} jobs/s ({r['ticks']} scheduling passes)")
        print(f"through to succeeded (NoopExecutor): {r['finish_s']:.2f} s = {r['finish_per_s']:.0f} jobs/s")
    if args.list_jobs:
        url2 = f"sqlite:///{tmp}/list.sqlite" if not args.db_url else args.db_url
        if args.db_url:
            print("(GET jobs runs on the same database, after the throughput jobs)")
        res = bench_list(url2, args.list_jobs, dep_path, os.path.join(tmp, "svc"))
        print(f"GET jobs with {args.list_jobs} jobs in the database (200 requests each):")
        for label, v in res.items():
            print(f"  {label:32s} p50 {v['p50_ms']:7.1f} ms   p95 {v['p95_ms']:7.1f} ms")
    print(json.dumps({"throughput": r}, default=str))


if __name__ == "__main__":
    main()
