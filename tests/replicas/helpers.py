"""Two (or more) aistack service processes on one database: what the chart's `replicas: 2` runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from job_runner.pod import job_token
from tests.job_service.helpers import ServiceProcess, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB_SECRET = "replicas-test-job-token-secret-0123456789"  # the chart's Secret gives every replica the same one


def replica(tmp_path, name: str, db_url: str, deployment_path: str, extra_args=(), config=None, **kw):
    """One replica (its own process and data folder: nothing shared but the database and the secret)."""
    cfg = {"Controller": {"tick_interval_s": 0.2}, "AIStackService": {"validate_kernels": False}}
    for k, v in (config or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v}
    svc = ServiceProcess(str(tmp_path / name), db_url, deployment_path, extra_args=extra_args, config=cfg,
                         **kw)
    svc.env["AISTACK_JOB_TOKEN_SECRET"] = JOB_SECRET
    return svc


def leader_and_follower(a, b):
    wait_for(lambda: sum(bool(s.health()["leader"]) for s in (a, b)) == 1, 20, what="exactly one leader")
    return (a, b) if a.health()["leader"] else (b, a)


def notebook(*sources) -> str:
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]} if i == 0 else {}, "source": src,
              "outputs": [], "execution_count": None, "id": f"c{i}"} for i, src in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}},
                       "nbformat": 4, "nbformat_minor": 5})


def run_pod(api: str, job_id: int, attempt: int, tmp_path):
    """The job pod's entry point (python -m job_runner.pod, real papermill) as a process, sending to ``api``."""
    env = {**os.environ, "PYTHONPATH": ROOT, "AISTACK_SERVICE_URL": api, "AISTACK_JOB_ID": str(job_id),
           "AISTACK_JOB_ATTEMPT": str(attempt), "AISTACK_JOB_TOKEN": job_token(JOB_SECRET, job_id, attempt),
           "AISTACK_WORK_DIR": str(tmp_path / "work"), "AISTACK_REPORT_INTERVAL": "0.5",
           "AISTACK_TERMINATION_LOG": str(tmp_path / "termination-log")}
    return subprocess.run([sys.executable, "-m", "job_runner.pod"], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
