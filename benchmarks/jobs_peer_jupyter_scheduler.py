"""The same notebook run as a job by jupyter-scheduler (the peer) and by the aistack job service, side by side.

  .venv/bin/python benchmarks/jobs_peer_jupyter_scheduler.py [--runs 5] [--venv /tmp/aistack-bench-js]

jupyter-scheduler is installed from PyPI into its own virtual environment (created if missing, with
`pip install jupyter-scheduler`), and runs headless: a `jupyter server` (no browser, no lab UI needed) with
its server extension, driven through its REST API (`POST /scheduler/jobs`, `GET /scheduler/jobs/{id}`).
Both are timed from the submission request to the job's final state (polled every 20 ms); "first cell" is
the first cell's execution start recorded in the output notebook (papermill's start_time, or nbclient's
iopub.execute_input). Prints medians and the ratio ours / theirs (goal < 1).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "job_service"))

import requests  # noqa: E402
from helpers import free_port  # noqa: E402
from jobs_latency import NOTEBOOK, iso_epoch, via_service  # noqa: E402


def ensure_venv(venv: str) -> str:
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(os.path.join(venv, "bin", "jupyter-server")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "jupyter-scheduler", "ipykernel"], check=True)
    return py


def jupyter_scheduler_runs(venv: str, runs: int):
    py = ensure_venv(venv)
    version = subprocess.run([py, "-c", "import jupyter_scheduler; print(jupyter_scheduler.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    root = tempfile.mkdtemp(prefix="aistack-peer-")
    with open(os.path.join(root, "nb.ipynb"), "w") as f:
        json.dump(NOTEBOOK, f)
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "JUPYTER"))}
    env["JUPYTER_RUNTIME_DIR"] = os.path.join(root, ".runtime")
    env["JUPYTER_DATA_DIR"] = os.path.join(root, ".data")  # its database and staging area land here
    os.makedirs(env["JUPYTER_DATA_DIR"], exist_ok=True)
    # The kernel the jobs use: the peer venv's own python3 kernel.
    subprocess.run([py, "-m", "ipykernel", "install", "--prefix", venv, "--name", "python3"], check=True,
                   capture_output=True, env=env)
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen([os.path.join(venv, "bin", "jupyter-server"), "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                             "--allow-root", "--ServerApp.jpserver_extensions={'jupyter_scheduler': True}"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    totals, firsts = [], []
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if s.get(base + "/scheduler/runtime_environments", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"jupyter server exited: {open(log.name).read()[-3000:]}")
            time.sleep(0.3)
        r = s.get(base + "/scheduler/runtime_environments")
        if not r.ok:
            raise SystemExit(f"jupyter-scheduler did not answer ({r.status_code}): {r.text[:300]}\n"
                             f"{open(log.name, errors='replace').read()[-3000:]}")
        envs = r.json()
        name = envs[0]["name"]
        for i in range(runs):
            t0 = time.time()
            r = s.post(base + "/scheduler/jobs", json={"input_uri": "nb.ipynb", "runtime_environment_name": name,
                                                         "name": f"bench-{i}", "output_formats": ["ipynb"],
                                                         "parameters": {"n": str(i)}})
            assert r.status_code == 200, r.text
            job_id = r.json()["job_id"]
            # A new job reads STOPPED (the ORM default) until its spawned process marks it IN_PROGRESS.
            give_up = time.time() + 600
            while time.time() < give_up:
                j = s.get(f"{base}/scheduler/jobs/{job_id}").json()
                if j["status"] in ("COMPLETED", "FAILED"):
                    break
                time.sleep(0.02)
            totals.append(time.time() - t0)
            if j["status"] != "COMPLETED":
                raise SystemExit(f"jupyter-scheduler job {j['status']}: {j.get('status_message')}\n"
                                 f"{open(log.name, errors='replace').read()[-4000:]}")
            outs = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                    if f.endswith(".ipynb") and job_id in d and f != "nb.ipynb"]
            if os.environ.get("PEER_DEBUG"):
                print(outs, glob.glob(os.path.join(root, "**", "*"), recursive=True)[:20])
            starts = []
            for p in outs:
                with open(p) as f:
                    for c in json.load(f)["cells"]:
                        ts = (c.get("metadata", {}).get("execution") or {}).get("iopub.execute_input")
                        if ts:
                            starts.append(iso_epoch(ts))
            firsts.append(min(starts) - t0 if starts else float("nan"))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return version, totals, firsts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--venv", default="/tmp/aistack-bench-js")
    args = ap.parse_args()
    version, js_total, js_first = jupyter_scheduler_runs(args.venv, args.runs)
    ours_total, ours_first = via_service(tempfile.mkdtemp(prefix="aistack-peer-ours-"), args.runs)
    med = statistics.median
    print(f"runs: {args.runs} each, same notebook, same machine")
    print(f"jupyter-scheduler {version}: first cell after {med(js_first):.2f} s, total {med(js_total):.2f} s (median)")
    print(f"aistack job service     : first cell after {med(ours_first):.2f} s, total {med(ours_total):.2f} s (median)")
    print(f"ratio ours/theirs total: {med(ours_total) / med(js_total):.3f} (goal < 1)")


if __name__ == "__main__":
    main()
