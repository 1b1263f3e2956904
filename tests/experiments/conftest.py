"""The experiment view's browser test reuses the lab extension tests' hub (tests/labextension/conftest.py);
the API tests start their own aistack service with ``experiment_service``."""
import contextlib

import yaml

from tests.job_service.helpers import DEPLOYMENT, ServiceProcess
from tests.labextension.conftest import ana, lab_hub  # noqa: F401


@contextlib.contextmanager
def experiment_service(tmp_path_factory, name: str, config: dict):
    """The real aistack service (LocalExecutor, SQLite, tests.job_service's deployment) with ``config``."""
    d = tmp_path_factory.mktemp(name)
    dep = d / "deployment.yaml"
    dep.write_text(yaml.safe_dump(DEPLOYMENT))
    s = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", str(dep), config=config)
    s.start()
    try:
        yield s
    finally:
        s.stop()
