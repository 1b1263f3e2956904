"""Fixtures of the pipeline tests: the real JupyterHub and PostgreSQL of tests/job_service, the aistack
service with the LocalExecutor (real papermill) and a home folder per user."""
from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

from tests.job_service.conftest import deployment_path, hub, postgres  # noqa: F401
from tests.job_service.helpers import ServiceProcess


@pytest.fixture(scope="module")
def homes():
    """The users' homes (Isolation.home_root): outside pytest's 0700 folder, so that a job's account (the
    service runs jobs under per-user accounts when it is root) can reach its home."""
    d = tempfile.mkdtemp(prefix="aistack-pipeline-homes-", dir="/home")  # not in /tmp: jobs get a private /tmp
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pipeline_service(hub, deployment_path, tmp_path_factory, homes):
    d = tmp_path_factory.mktemp("svc")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 2},
           "Isolation": {"home_root": str(homes)}, "PipelineSettings": {"tick_interval_s": 0.2},
           "AIStackService": {"notebook_root": str(homes / "{user}")}}
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                         port=hub["service_port"], config=cfg)
    svc.start()
    yield svc
    svc.stop()
