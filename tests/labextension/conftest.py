"""One real AIStack Hub (``aistack-hub up``: JupyterHub + configurable-http-proxy + the aistack service) for
the lab extension's tests, shared by the server-extension tests and the browser test.

No GPU here: the configured inventory of the test config stands in for NVML. The test jobs run on the
CPU-only profile with real papermill kernels.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import nbformat
import pytest
import requests

from tests.hub.launcher import PASSWORD, start_hub, stop_hub

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(REPO, "test-artifacts", "labextension")

LAB_CONFIG = {
    "Authenticator": {"admin_users": ["admin"]},
    "JupyterHub": {"named_server_limit_per_user": 3},
    "tenants": [
        {"name": "team-a", "emergency_users": ["ana"], "quotas": {"any": {"gpu_milli": 1000, "cpu_milli": 8000}}},
        {"name": "team-b", "quotas": {"any": {"gpu_milli": 500}}},
    ],
    "profiles": [
        {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "quarter", "display_name": "1/4 GPU",
         "request": {"kind": "share", "gpu_milli": 250, "gpu_mem_mib": 12288, "cpu_milli": 500, "memory_mib": 1024}},
    ],
    "inventory": [
        {"name": "test-node", "cpu_milli": 16000, "memory_mib": 65536, "gpus": [{"model": "A100-80GB"}]},
    ],
}


def params_notebook(extra_source: str = "") -> dict:
    """A notebook with a parameters cell whose values show up in its output."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("greeting = 'hello'  # what to print\nrepeat: int = 2\nscale = 0.5\nloud = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Parameters demo"),
        params,
        nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)\nresult = scale * repeat\n"
                                  "print('RESULT', (greeting.upper() if loud else greeting) * repeat, result)"),
    ]
    if extra_source:
        nb.cells.append(nbformat.v4.new_code_cell(extra_source))
    return json.loads(nbformat.writes(nb))


class LabUser:
    """A user with a running single-user server, reached through the proxy with their own token."""

    def __init__(self, hub, name: str, token: str, server_url: str):
        self.hub, self.name, self.token, self.server_url = hub, name, token, server_url

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {self.token}"
        return requests.request(method, self.server_url + path, headers=headers, timeout=60, **kw)

    def ext(self, method: str, path: str, **kw) -> requests.Response:
        return self.request(method, "aistack-lab/" + path, **kw)

    def fresh_lab(self):
        """JupyterLab as a new user sees it: no Jupyter-news toast over the screenshots, and no workspace
        saved by an earlier test. Homes outlive a test's hub, so without this the lab restored whatever
        layout the last browser test left (side panels open, a narrower notebook whose toolbar moved the
        Run-as-job button into its overflow menu)."""
        r = self.request("PUT", "lab/api/settings/@jupyterlab/apputils-extension:notification",
                         json={"raw": json.dumps({"fetchNews": "false"})})
        assert r.status_code == 204, r.text
        r = self.request("GET", "lab/api/workspaces")
        assert r.status_code == 200, r.text
        for ws in r.json()["workspaces"]["ids"]:
            d = self.request("DELETE", f"lab/api/workspaces/{ws}")
            assert d.status_code == 204, d.text

    def put_notebook(self, path: str, nb: dict):
        r = self.request("PUT", f"api/contents/{path}", json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text

    def wait_job(self, job_id, states=("succeeded", "failed", "cancelled"), timeout=120) -> dict:
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            r = self.ext("GET", f"api/jobs/{job_id}")
            assert r.status_code == 200, r.text
            job = r.json()
            if job["state"] in states:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {json.dumps(job)[:1500]}\n"
                             f"{self.hub.log_tail(3000)}")


def _start_server(hub, name: str, token: str, tenant: str) -> str:
    r = hub.api("POST", f"users/{name}/server", token, json={"tenant": tenant, "profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    srv = hub.wait_ready(name, "", token, timeout=120)
    return hub.url.rstrip("/") + srv["url"]


@pytest.fixture(scope="package")
def lab_hub():
    tmp = tempfile.mkdtemp(prefix="aistack-lab-test-")
    os.chmod(tmp, 0o711)  # the servers' unprivileged account must reach its home below
    hub = start_hub(LAB_CONFIG, tmp)
    try:
        # ana: team-a only, signed up with a password (the browser test signs in as her); bo: both tenants
        assert "sent to the admin" in hub.signup("ana")
        hub.signup("bo")
        hub.signup("admin")
        admin = hub.login("admin")
        assert admin is not None, hub.log_tail()
        for name in ("ana", "bo"):
            assert admin.get(hub.url + f"hub/authorize/{name}").status_code == 200
            # a JupyterHub user exists once they have signed in
            assert hub.login(name) is not None, f"{name} cannot sign in:\n{hub.log_tail()}"
        for group, users in (("team-a", ["ana", "bo"]), ("team-b", ["bo"])):
            r = hub.api("POST", f"groups/{group}/users", json={"users": users})
            assert r.status_code == 200, r.text
        hub.tokens = {}
        for name in ("ana", "bo"):
            r = hub.api("POST", f"users/{name}/tokens", json={"note": "lab extension tests"})
            assert r.status_code == 201, r.text
            hub.tokens[name] = r.json()["token"]
        hub.password = PASSWORD
        yield hub
    finally:
        stop_hub(hub)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shutil.copy(hub.log_path, os.path.join(ARTIFACTS, "hub.log"))
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="package")
def ana(lab_hub) -> LabUser:
    token = lab_hub.tokens["ana"]
    return LabUser(lab_hub, "ana", token, _start_server(lab_hub, "ana", token, "team-a"))
