"""One real AIStack Hub (``aistack-hub up`` through tests/hub/launcher.py: JupyterHub with NativeAuthenticator,
configurable-http-proxy, the aistack service) for the onboarding tests: the browser flows and the priority
grant API tests.

No GPU here: the configured inventory (two A100-80GB) stands in for NVML; the jobs and servers use the real
scheduler and processes, and nothing in them touches a GPU.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import nbformat
import pytest

from tests.hub.launcher import PASSWORD, REPO, HubStartError, start_hub, stop_hub

ARTIFACTS = os.path.join(REPO, "test-artifacts", "onboarding")

CONFIG = {
    "Authenticator": {"admin_users": ["admin"]},
    "JupyterHub": {"named_server_limit_per_user": 2},
    "tenants": [
        {"name": "team-a", "quotas": {"any": {"gpu_milli": 2000, "max_servers_per_user": 1}}},
        {"name": "team-b", "quotas": {"any": {"gpu_milli": 2000}}},
    ],
    "profiles": [
        {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 200, "memory_mib": 512}},
        {"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 200,
                                                               "memory_mib": 512}},
        {"slug": "gpu-2", "display_name": "2 GPUs", "request": {"kind": "whole", "gpus": 2, "cpu_milli": 200,
                                                                "memory_mib": 512}},
    ],
    "inventory": [{"name": "test-node", "cpu_milli": 8000, "memory_mib": 32768,
                   "gpus": [{"model": "A100-80GB"}, {"model": "A100-80GB"}]}],
}


@pytest.fixture(scope="package")
def hub():
    tmp = tempfile.mkdtemp(prefix="aistack-onboarding-")
    os.chmod(tmp, 0o711)
    try:
        h = start_hub(CONFIG, tmp)
    except HubStartError as e:
        pytest.fail(str(e), pytrace=False)
    h.password = PASSWORD
    try:
        assert h.login("admin") is None  # not signed up yet
        h.signup("admin")  # an admin user is approved on sign-up
        assert h.login("admin") is not None, h.log_tail()
        yield h
    finally:
        stop_hub(h)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shutil.copy(h.log_path, os.path.join(ARTIFACTS, "hub.log"))
        shutil.rmtree(tmp, ignore_errors=True)


def user_token(hub, name: str, groups=()) -> str:
    """A JupyterHub user (created through the API, as the admin page does) in ``groups``, and a token of theirs."""
    r = hub.api("POST", f"users/{name}")
    assert r.status_code in (201, 409), r.text
    for g in groups:
        r = hub.api("POST", f"groups/{g}/users", json={"users": [name]})
        assert r.status_code == 200, r.text
    r = hub.api("POST", f"users/{name}/tokens", json={"note": "onboarding tests"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def sleep_notebook(seconds: float = 60) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})")]
    return json.loads(nbformat.writes(nb))


def wait_for(cond, timeout: float, what: str, hub=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{hub.log_tail(3000)}" if hub else ""))
