"""Fixtures of the replica tests: the real PostgreSQL and JupyterHub of tests/job_service, the real control
plane of tests/k8s (kube-apiserver, controllers, scheduler; kwok for the nodes)."""
from tests.job_service.conftest import deployment_path, hub, postgres  # noqa: F401
from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401
