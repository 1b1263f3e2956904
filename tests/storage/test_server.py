"""A real single-user server (LocalGPUSpawner through ``aistack-hub up``, as root) gets its tenant's folder,
read-write at /shared/<tenant> as the member's own account, the datasets published to the tenant read-only,
and the tenant's environments as kernelspecs on JUPYTER_PATH; another tenant's folder is not there."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import pytest

from job_runner.binding.accounts import Isolation
from tests.hub.kernel import run_code
from tests.hub.launcher import HubStartError, start_hub, stop_hub
from tests.isolation.conftest import config as isolation_config

CODE = r'''
import errno, json, os
d = os.environ.get("AISTACK_TENANT_DIR")
open(os.path.join(d, "from-server.txt"), "w").write("hi")
try:
    open("/datasets/shared-ds/x", "w"); ds = "allowed"
except OSError as e:
    ds = e.errno
kernels = [k for p in os.environ.get("JUPYTER_PATH", "").split(":") if p for k in os.listdir(os.path.join(p, "kernels"))]
print(json.dumps({"dir": d, "uid": os.getuid(), "ds": ds, "read": open("/datasets/shared-ds/readme").read(),
                  "other": os.path.exists("/shared/team-b"), "kernels": kernels}))
'''


def test_a_server_mounts_its_tenant_folder_datasets_and_environments():
    if os.geteuid() != 0:
        pytest.fail("the storage tests run as root (tenant groups, members' accounts, sandboxes)")
    tmp = tempfile.mkdtemp(prefix="aistack-srv-storage-")
    homes, root = os.path.join(tmp, "homes"), os.path.join(tmp, "storage")
    cfg = isolation_config(homes)
    cfg["TenantStorage"] = {"root": os.path.join(root, "tenants"), "group_prefix": "aistack-tss-"}
    try:
        hub = start_hub(cfg, tmp)
    except HubStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        assert hub.api("POST", "users/ivy").status_code in (201, 409)
        token = hub.api("POST", "users/ivy/tokens", json={"note": "storage"}).json()["token"]
        r = hub.service("PUT", "datasets/shared-ds", json={"tenants": ["team-a"]})
        assert r.status_code == 201, r.text
        with open(os.path.join(root, "datasets", "shared-ds", "readme"), "w") as f:
            f.write("read me")
        os.chmod(os.path.join(root, "datasets", "shared-ds", "readme"), 0o644)
        r = hub.service("PUT", "environments/tf", json={"python": sys.executable, "tenants": ["team-a"]})
        assert r.status_code == 201, r.text
        r = hub.api("POST", "users/ivy/servers/lab", token, json={"tenant": "team-a", "profile": "cpu"})
        assert r.status_code in (201, 202), r.text
        try:
            srv = hub.wait_ready("ivy", "lab", token, timeout=120)
            out = json.loads(run_code(hub.url.rstrip("/") + srv["url"], token, CODE).strip().splitlines()[-1])
        finally:
            hub.api("DELETE", "users/ivy/servers/lab", token)
        ivy = Isolation(home_root=homes).account("ivy", create=False)
        assert out["dir"] == "/shared/team-a" and out["uid"] == ivy.uid, out
        assert out["ds"] == 30 and out["read"] == "read me" and out["other"] is False, out  # 30: EROFS
        assert out["kernels"] == ["aistack-tf"], out
        made = os.stat(os.path.join(root, "tenants", "team-a", "from-server.txt"))
        assert made.st_uid == ivy.uid
    finally:
        stop_hub(hub)
        shutil.rmtree(tmp, ignore_errors=True)
