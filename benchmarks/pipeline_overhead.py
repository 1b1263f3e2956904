"""Pipelines' scheduling overhead and a 200-task fan-out under quota (issue 14). Prints figures.

    .venv/bin/python benchmarks/pipeline_overhead.py [--chain 5] [--fan-out 200]

A real aistack service process (SQLite, the NoopExecutor: a job "runs" for --job-s seconds; what is measured
is the pipeline layer, not papermill), called with the hub's token (an admin, who may charge any tenant).
1. Overhead: one job alone, submit -> succeeded; then a chain of N one-task stages; overhead per task =
   (chain time - N x single-job time) / N. Goal <= 1 s.
2. Fair share: a 200-value fan-out in team-a (quota 2 GPUs, 1/4-GPU tasks) while team-c submits 8 jobs of
   its own: team-c's queue waits (admitted - created) and team-a's peak concurrency (never over its quota).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.job_service.helpers import DEPLOYMENT, ServiceProcess, make_notebook, wait_for  # noqa: E402


def iso(t):
    import datetime as dt
    return dt.datetime.fromisoformat(t.rstrip("Z")).timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=5)
    ap.add_argument("--fan-out", type=int, default=200)
    ap.add_argument("--job-s", type=float, default=1.0)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="aistack-pl-bench-")
    home = os.path.join(d, "homes", "hub")
    os.makedirs(home)
    with open(os.path.join(home, "nb.ipynb"), "w") as f:
        json.dump(make_notebook("pass", params="x = 0"), f)
    dep = os.path.join(d, "deployment.yaml")
    with open(dep, "w") as f:
        yaml.safe_dump(DEPLOYMENT, f)
    cfg = {"Controller": {"tick_interval_s": 0.2}, "NoopExecutor": {"duration_s": args.job_s},
           "PipelineSettings": {"tick_interval_s": 0.2},
           "AIStackService": {"notebook_root": os.path.join(d, "homes", "{user}"), "validate_kernels": False,
                              "executor_class": "job_runner.executors.noop.NoopExecutor"}}
    svc = ServiceProcess(os.path.join(d, "svc"), f"sqlite:///{d}/a.sqlite", dep, config=cfg).start()
    s, api = svc.session(), svc.api
    try:
        # 1. a single job
        singles = []
        for _ in range(3):
            t0 = time.time()
            j = s.post(api + "jobs", json={"path": "nb.ipynb", "profile": "cpu", "tenant": "team-a"}).json()
            wait_for(lambda: s.get(f"{api}jobs/{j['id']}").json()["state"] == "succeeded", 60, 0.05, "the job")
            singles.append(time.time() - t0)
        single = min(singles)
        tasks = [{"name": f"t{i}", "notebook": "nb.ipynb", **({"depends": [f"t{i - 1}"]} if i else {})}
                 for i in range(args.chain)]
        spec = yaml.safe_dump({"name": "chain", "defaults": {"profile": "cpu"}, "tasks": tasks})
        t0 = time.time()
        run = s.post(api + "pipelines/runs", json={"spec": spec, "tenant": "team-a"}).json()
        wait_for(lambda: s.get(f"{api}pipelines/runs/{run['id']}").json()["state"] == "succeeded", 300, 0.05, "chain")
        chain = time.time() - t0
        per_task = (chain - args.chain * single) / args.chain
        print(f"single job submit->succeeded: {single:.2f} s (best of 3; the job runs {args.job_s:.1f} s)")
        print(f"chain of {args.chain}: {chain:.2f} s; overhead per task vs a single job: {per_task:.2f} s "
              f"(goal <= 1 s: {'met' if per_task <= 1 else 'NOT met'})")

        # 2. a fan-out under quota, another tenant alongside
        spec = yaml.safe_dump({"name": "fan", "tasks": [{"name": "sweep", "notebook": "nb.ipynb",
                               "profile": "gpu-quarter", "fan_out": {"parameter": "x",
                                                                     "values": list(range(args.fan_out))}}]})
        t0 = time.time()
        run = s.post(api + "pipelines/runs", json={"spec": spec, "tenant": "team-a"}).json()
        wait_for(lambda: s.get(f"{api}pipelines/runs/{run['id']}").json()["counts"].get("queued", 0)
                 + s.get(f"{api}pipelines/runs/{run['id']}").json()["counts"].get("running", 0) >= 8, 60, 0.1, "fan-out")
        other = [s.post(api + "jobs", json={"path": "nb.ipynb", "profile": "gpu-quarter", "tenant": "team-c"}).json()
                 for _ in range(8)]
        wait_for(lambda: all(s.get(f"{api}jobs/{j['id']}").json()["state"] == "succeeded" for j in other), 120, 0.2,
                 "team-c's jobs")
        waits = [iso(s.get(f"{api}jobs/{j['id']}").json()["admitted_at"]) - iso(j["created_at"]) for j in other]
        wait_for(lambda: s.get(f"{api}pipelines/runs/{run['id']}").json()["state"] == "succeeded",
                 args.fan_out * args.job_s + 300, 0.5, "the fan-out")
        fan = time.time() - t0
        jobs, nxt = [], "limit=500&tenant=team-a"
        while nxt:
            page = s.get(f"{api}jobs?{nxt}").json()
            jobs += [j for j in page["jobs"] if j["name"].startswith(f"fan-{run['id']}-")]
            nxt = page["next"]
        events = sorted([(iso(j["admitted_at"]), 1) for j in jobs] + [(iso(j["finished_at"]), -1) for j in jobs])
        peak = cur = 0
        for _, k in events:
            cur += k
            peak = max(peak, cur)
        print(f"fan-out of {args.fan_out} (1/4 GPU each, team-a quota 2 GPUs): done in {fan:.1f} s, "
              f"{len(jobs)} jobs, peak {peak} at once (quota allows 8)")
        print(f"team-c's 8 jobs meanwhile: queue wait max {max(waits):.2f} s, mean {sum(waits) / len(waits):.2f} s")
    finally:
        svc.stop()


if __name__ == "__main__":
    main()
