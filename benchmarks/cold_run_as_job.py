""""Run as job" on a cold service: how long the first requests after a start take.

  .venv/bin/python benchmarks/cold_run_as_job.py [--runs 3] [--limit-s 1.0]

Each run starts the real service (``python -m aistack_hub.service``, SQLite, NoopExecutor so that no kernel
starts, kernels validated as in a deployment) and, as soon as ``/health`` answers, does what the lab's
"Run as job" does: ``POST jobs/inspect`` (the dialog's parameters), ``GET profiles``, then ``POST jobs`` (the
submission) with a small parameterised notebook; then the same three again, warm, five times. Figures:
each cold request's time, the warm medians, the ratio cold / warm (the baseline, measured in the same
process against the same service), and the old path's floor: papermill imported and asked for the
parameters in a fresh interpreter, which the first request used to wait for (in the notebook workers).
Exit status 1 if a cold request took longer than ``--limit-s`` in every run.
"""
from __future__ import annotations

import argparse
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

NOTEBOOK = make_notebook("import math\nprint(math.sqrt(n))", "print(name)",
                         params="n: int = 4  # how many\nname = 'run'\nrates = [0.1,\n 0.2]  # tried")
DEPLOYMENT = {"tenants": [{"name": "bench"}],
              "profiles": [{"slug": "cpu", "request": {"kind": "cpu", "cpu_milli": 100}}],
              "inventory": [{"name": "node", "cpu_milli": 16000, "memory_mib": 65536, "gpus": 0}]}
STEPS = ("inspect", "profiles", "submit")


def _steps(s: requests.Session, api: str) -> dict:
    out = {}
    t = time.perf_counter()
    r = s.post(api + "jobs/inspect", json={"notebook": NOTEBOOK}, timeout=120)
    out["inspect"] = time.perf_counter() - t
    assert r.status_code == 200 and [p["name"] for p in r.json()["parameters"]] == ["n", "name", "rates"], r.text
    t = time.perf_counter()
    r = s.get(api + "profiles", params={"tenant": "bench"}, timeout=120)
    out["profiles"] = time.perf_counter() - t
    assert r.status_code == 200, r.text
    t = time.perf_counter()
    r = s.post(api + "jobs", json={"notebook": NOTEBOOK, "profile": "cpu", "tenant": "bench",
                                   "parameters": {"n": 9}}, timeout=120)
    out["submit"] = time.perf_counter() - t
    assert r.status_code == 201, r.text
    return out


def measure(tmp: str, runs: int = 3) -> dict:
    """Cold and warm figures of ``runs`` fresh service starts, and the old path's floor."""
    dep = os.path.join(tmp, "deployment.yaml")
    with open(dep, "w") as f:
        yaml.safe_dump(DEPLOYMENT, f)
    cfg = {"Controller": {"tick_interval_s": 0.5}, "NoopExecutor": {"duration_s": 1.0},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}
    s = requests.Session()
    s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
    cold, warm = [], []
    for i in range(runs):
        d = os.path.join(tmp, f"run-{i}")
        svc = ServiceProcess(d, f"sqlite:///{d}/cold.sqlite", dep, config=cfg)
        svc.start(timeout=120)  # returns as soon as /health answers: the service is as cold as it gets
        try:
            cold.append(_steps(s, svc.api))
            for _ in range(5):
                warm.append(_steps(s, svc.api))
        finally:
            svc.stop()
    t = time.perf_counter()
    probe = ("import json, os, tempfile, nbformat, papermill\n"
             f"nb = nbformat.from_dict(json.loads({json.dumps(json.dumps(NOTEBOOK))}))\n"
             "p = os.path.join(tempfile.mkdtemp(), 'n.ipynb'); nbformat.write(nb, p)\n"
             "print(len(papermill.inspect_notebook(p)))")
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True)
    old_floor = time.perf_counter() - t
    return {"cold": cold, "warm_median": {k: statistics.median(w[k] for w in warm) for k in STEPS},
            "papermill_inspect_fresh_s": old_floor}


def report(res: dict, limit_s: float) -> bool:
    warm = res["warm_median"]
    print(f"cold 'Run as job' on a fresh service ({len(res['cold'])} starts); warm = median of 5 per start")
    print(f"{'request':<10} {'cold (each start)':<28} {'warm':>9} {'cold/warm':>10}")
    ok_any = False
    for c in res["cold"]:
        ok_any |= all(c[k] < limit_s for k in STEPS)
    for k in STEPS:
        colds = [c[k] for c in res["cold"]]
        print(f"{k:<10} {', '.join(f'{x * 1000:.0f} ms' for x in colds):<28} {warm[k] * 1000:>6.0f} ms "
              f"{statistics.median(colds) / warm[k]:>9.1f}x")
    total = [sum(c[k] for k in STEPS) for c in res["cold"]]
    print(f"dialog + submit, cold: {', '.join(f'{x:.2f} s' for x in total)} (limit {limit_s:.1f} s per request)")
    print(f"old path's floor: papermill imported and inspecting in a fresh interpreter: "
          f"{res['papermill_inspect_fresh_s']:.2f} s ({res['papermill_inspect_fresh_s'] / min(total):.1f}x "
          "the whole cold dialog + submit now)")
    return ok_any


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--limit-s", type=float, default=1.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aistack-cold-") as tmp:
        res = measure(tmp, args.runs)
    return 0 if report(res, args.limit_s) else 1


if __name__ == "__main__":
    sys.exit(main())
