"""The real ``aistack`` service for the Kubernetes tests, started the one way tests start it
(``tests.job_service.helpers.ServiceProcess``), with the NoopExecutor holding jobs 'running'."""
import contextlib
import os

import yaml

from tests.job_service.helpers import SERVICE_TOKEN, ServiceProcess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUB_TOKEN = SERVICE_TOKEN  # the hub's token: what the hub's spawner sends


@contextlib.contextmanager
def aistack_service(tmp_path, deployment: dict, *args: str):
    """The service on a loopback port with ``deployment`` (tenants, profiles, inventory), the NoopExecutor
    holding jobs 'running' for an hour, and ``HUB_TOKEN`` as the hub's token. Yields a dict with
    ``api`` (URL), ``data`` (its data dir), ``db`` (URL), ``proc``, ``log``; fails with the service's log."""
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deployment))
    data = tmp_path / "data"
    db = f"sqlite:///{data / 'aistack.sqlite'}"
    svc = ServiceProcess(str(data), db, str(tmp_path / "deploy.yaml"), extra_args=(
        "--executor=job_runner.executors.noop.NoopExecutor", "--NoopExecutor.duration_s=3600",
        "--AIStackService.validate_kernels=False", *args))
    svc.start(timeout=30)
    try:
        yield {"api": svc.api, "data": data, "db": db, "proc": svc.proc, "log": svc.log_path}
    finally:
        svc.stop()
