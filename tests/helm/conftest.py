# The chart is installed into the shared test control plane (tests/k8s).
from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401
