"""Fuzz the API from its own OpenAPI description (schemathesis): whatever it sends, no 5xx.

The service runs behind the real JupyterHub (tokens checked by HubAuth) with the NoopExecutor, so that
generated jobs which happen to be valid do not start kernels.
"""
from __future__ import annotations

import os
import re
import subprocess

from .helpers import PYTHON, ServiceProcess


def test_schemathesis_finds_no_server_error(hub, deployment_path, tmp_path):
    cfg = {"Controller": {"tick_interval_s": 0.2},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}
    svc = ServiceProcess(str(tmp_path / "svc"), f"sqlite:///{tmp_path}/fuzz.sqlite", deployment_path,
                         hub_api_url=hub["api"], config=cfg).start()
    st = os.path.join(os.path.dirname(PYTHON), "schemathesis")
    try:
        for user in ("root", "alice"):  # a hub admin (everything allowed) and a plain tenant member
            proc = subprocess.run(
                [st, "run", svc.api + "openapi.json", "--checks", "not_a_server_error",
                 "-H", f"Authorization: token {hub['tokens'][user]}", "--workers", "1", "--max-examples", "25",
                 # --max-time: the coverage phase alone takes ~30 s on this loaded machine; fuzzing follows it
                 "--phases", "examples,coverage,fuzzing", "--max-time", "60", "--seed", "1",
                 "--request-timeout", "20", "--suppress-health-check", "all", "--no-shrink"],
                capture_output=True, text=True, timeout=240, cwd=tmp_path)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, f"schemathesis ({user}) found failures:\n{out[-6000:]}\n--- service log:\n{svc.log_tail()}"
            m = re.search(r"(\d+) generated, (\d+) passed", out)
            assert m and int(m.group(1)) == int(m.group(2)) >= 50, out[-3000:]
            assert " 500 " not in svc.log_tail(200000), svc.log_tail()
    finally:
        svc.stop()
