# Fixtures of the KubeGPUSpawner / KubernetesExecutor tests.
# The control plane (real kube-apiserver, controller-manager, scheduler; kwok for the nodes) comes from
# tests/k8s; the rendering tests need no cluster, only a kubeconfig for kubespawner's client setup.
import pytest

from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
  name: none
contexts:
- context: {cluster: none, user: none}
  name: none
current-context: none
users:
- name: none
  user: {token: unused}
"""


@pytest.fixture
def offline_kubeconfig(tmp_path, monkeypatch):
    """KubeSpawner loads a client configuration in __init__: give it one that points nowhere.
    The rendering tests only build manifests; any API call would fail loudly."""
    path = tmp_path / "kubeconfig"
    path.write_text(UNREACHABLE_KUBECONFIG)
    # kubernetes_asyncio reads $KUBECONFIG once, at import: point its default at our file.
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    from kubespawner.clients import load_config

    load_config.cache_clear()  # kubespawner caches its global client configuration per host
    return "https://127.0.0.1:9"
