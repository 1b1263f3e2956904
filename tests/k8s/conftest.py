# The control-plane fixtures for the tests in this folder (other folders import them the same way).
from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401
