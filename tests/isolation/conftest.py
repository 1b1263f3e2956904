"""One real AIStack Hub (``aistack-hub up`` through tests/hub/launcher.py: JupyterHub, configurable-http-proxy,
the aistack service with the LocalExecutor and real papermill) for the isolation tests, started as root so
that isolation is in its default "accounts" mode. Users' homes go under this run's own folder
(``Isolation.home_root``); their accounts (aistack-<name>) are real system accounts of this machine.
No GPU here: the configured inventory stands in for NVML (nothing in these tests needs CUDA)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.hub.launcher import HubStartError, start_hub, stop_hub

USERS = {"ivy": "team-a", "oscar": "team-b"}


def config(home_root: str) -> dict:
    return {
        "Authenticator": {"admin_users": ["admin"]},
        "JupyterHub": {"load_groups": {"team-a": {"users": ["ivy"]}, "team-b": {"users": ["oscar"]}}},
        "Isolation": {"home_root": home_root},
        "tenants": [{"name": "team-a", "quotas": {"any": {"gpu_milli": 1000}}},
                    {"name": "team-b", "quotas": {"any": {"gpu_milli": 1000}}}],
        "profiles": [{"slug": "cpu", "display_name": "CPU only",
                      "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}}],
        "inventory": [{"name": "test-node", "cpu_milli": 8000, "memory_mib": 32768,
                       "gpus": [{"model": "A100-80GB"}]}],
    }


@pytest.fixture(scope="module")
def hub():
    if os.geteuid() != 0:
        pytest.fail("the isolation tests run as root (as run.sh runs the hub on a fresh machine)")
    tmp = tempfile.mkdtemp(prefix="aistack-iso-")
    homes = os.path.join(tmp, "homes")
    try:
        h = start_hub(config(homes), tmp)
    except HubStartError as e:
        pytest.fail(str(e), pytrace=False)
    h.home_root = homes
    h.tokens = {}
    for user in USERS:
        r = h.api("POST", f"users/{user}")
        assert r.status_code in (201, 409), r.text
        r = h.api("POST", f"users/{user}/tokens", json={"note": "isolation test"})
        assert r.status_code == 201, r.text
        h.tokens[user] = r.json()["token"]
    try:
        yield h
    finally:
        stop_hub(h)
        shutil.rmtree(tmp, ignore_errors=True)
