"""Fuzz the API from its own OpenAPI description (schemathesis): whatever it sends, no 5xx.

The service runs behind the real JupyterHub (tokens checked by HubAuth) with the NoopExecutor, so that
generated jobs which happen to be valid do not start kernels. It sends only what the document names:
test_openapi_routes.py keeps every registered route in it, and this test checks that every operation of
the document was tested (not left out when the time budget ran out).
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import requests

from .helpers import PYTHON, SERVICE_TOKEN, ServiceProcess

# What the fuzz test (or a reading of the handlers) once answered 500, each now a 400 saying what is wrong:
# (method, path under api/, JSON body as text or None, the answer's "error", a word of its message).
FOUND = [
    ("GET", "datasets?limit=406&offset=874583987109129111619784574763008", None, "bad_request", "offset"),
    ("GET", "environments?offset=874583987109129111619784574763008", None, "bad_request", "offset"),
    ("GET", "monitoring/queue?until=-4.601582131709286e%2B16", None, "bad_request", "until"),
    ("GET", "monitoring/gpus?since=1e300", None, "bad_request", "since"),
    ("GET", "monitoring/idle-intervals?since=1e17&until=100000000000000001", None, "bad_request", "since"),
    ("GET", "monitoring/gpus?points=-1", None, "bad_request", "points"),
    ("GET", "monitoring/idle/99999999999999999999", None, "bad_request", "18 digits"),
    ("PUT", "monitoring/policies/team-a", '{"max_keep_hours": NaN}', "bad_request", "finite"),
    ("POST", "pipelines/runs", '{"path": "", "spec": "", "tenant": {}}', "bad_request", "tenant"),
    ("POST", "pipelines/runs", '{"spec": "name: x", "tenant": "team-a", "schedule_id": {}}', "bad_request",
     "schedule_id"),
    # a lone surrogate is refused where every JSON body is decoded (services.notebooks.decode_object)
    ("POST", "pipelines/validate", '{"spec": "\\ud800"}', "bad_json", "surrogate"),
    # a YAML tag composes but cannot be constructed (found by the fuzzer after stop 19's CI run)
    ("POST", "pipelines/validate", '{"path": "", "spec": "!"}', "bad_pipeline", "not valid YAML"),
    ("POST", "pipelines/validate", '{"spec": "tasks: [!python/object:os.system x]"}', "bad_pipeline", "tag"),
    ("GET", "pipelines/runs?state=nope", None, "bad_state", "running"),
    ("POST", "schedules", '{"catch_up": "all", "catch_up_max": 1, "concurrency_policy": "Allow", "cron": "", '
     '"kind": "notebook", "name": "0", "on_window": false, "starting_deadline_s": 5e-324, "target": {}, '
     '"tenant": {}, "timezone": ""}', "bad_request", "tenant"),
    ("PUT", "schedules/holidays/team-a", '{"days": [{"date": "2026-01-01", "name": "\\ud800"}]}', "bad_json",
     "surrogate"),
    ("GET", "allocations?limit=\u00b9", None, "bad_limit", "whole number"),
    ("GET", "allocations/released?limit=\u00b9", None, "bad_limit", "whole number"),
]


@pytest.fixture(scope="module")
def bare_service(deployment_path, tmp_path_factory):
    """The service without a hub: the hub's token is its only caller (an admin)."""
    d = tmp_path_factory.mktemp("found")
    svc = ServiceProcess(str(d / "svc"), f"sqlite:///{d}/found.sqlite", deployment_path, config={
        "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}).start()
    yield svc
    svc.stop()


@pytest.mark.parametrize("method,path,body,code,word", FOUND, ids=[f"{m} {p[:40]}" for m, p, *_ in FOUND])
def test_what_the_fuzzer_found_is_a_clear_400(bare_service, method, path, body, code, word):
    r = requests.request(method, bare_service.api + path, data=body, timeout=30, headers={
        "Authorization": f"token {SERVICE_TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == code and word in r.json()["message"], r.text


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
            ops = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", out)
            assert ops and int(ops.group(2)) > 80 and ops.group(1) == ops.group(2) == ops.group(3), out[-3000:]
            assert " 500 " not in svc.log_tail(200000), svc.log_tail()
    finally:
        svc.stop()
