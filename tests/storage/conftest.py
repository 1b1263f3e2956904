"""A real JupyterHub and the aistack service (LocalExecutor, real papermill, as root: each user's job runs as
their own account in bubblewrap) with tenant storage under this run's own folder. The hub fixture is the job
service tests' (tenants team-a: alice, bob, carol (its admin); team-b: dave)."""
from __future__ import annotations

import os

import pytest

from tests.job_service.conftest import deployment_path, hub  # noqa: F401  (fixtures)
from tests.job_service.helpers import ServiceProcess


@pytest.fixture(scope="module")
def storage_service(hub, deployment_path, tmp_path_factory):  # noqa: F811
    if os.geteuid() != 0:
        pytest.fail("the storage tests run as root (tenant groups, members' accounts, sandboxes)")
    d = tmp_path_factory.mktemp("storage-svc")
    root = d / "storage"
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 2},
           "Isolation": {"home_root": str(d / "homes")},
           "TenantStorage": {"root": str(root / "tenants"), "group_prefix": "aistack-tst-", "usage_cache_s": 0}}
    svc = ServiceProcess(str(d / "data"), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                         port=hub["service_port"], config=cfg)
    svc.start()
    svc.root, svc.homes = root, d / "homes"
    yield svc
    svc.stop()
