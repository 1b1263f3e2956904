"""Fixtures of the limits tests: the real JupyterHub of the job service tests (tokens checked by HubAuth),
and a service with small limits (NoopExecutor: jobs "run" for an hour without kernels)."""
from __future__ import annotations

import pytest

from job_service.conftest import deployment_path, hub  # noqa: F401  (fixtures, shared)
from job_service.helpers import ServiceProcess

# Small limits, so that the tests reach them with small requests.
LIMITS = {"max_notebook_bytes": 200_000, "max_parameters_bytes": 2000, "max_sweep_jobs": 12, "max_page_size": 5,
          "default_page_size": 4, "max_output_bytes": 100_000, "max_log_followers_per_user": 2}
MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory, deployment_path):  # noqa: F811
    """The service (hub token only: the identity "hub", an admin) with LIMITS."""
    d = tmp_path_factory.mktemp("limited")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "Limits": LIMITS, "NoopExecutor": {"duration_s": 3600},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor", "max_body_bytes": MAX_BODY,
                              "notebook_root": str(d / "homes" / "{user}")}}
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, config=cfg)
    svc.start()
    yield svc
    svc.stop()
