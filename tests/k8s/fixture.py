"""pytest fixtures for the test Kubernetes control plane (see tests/k8s/README.md).

Use from any test folder by importing the fixtures into its conftest.py:

    from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401

One control plane serves the whole pytest session, however many conftests import these fixtures.
If the binaries are not built the fixture fails (never skips) with the command that builds them.
"""
from __future__ import annotations

import os

import pytest

from tests.k8s.controlplane import BinariesMissing, ControlPlane, StartFailed

# Shared by every conftest that imports these fixtures: each import gives pytest its own
# session-scoped fixture definition, but they must all get the same processes.
_shared: dict = {"control_plane": None, "users": 0, "error": None}


def _acquire(tmp_path_factory) -> ControlPlane:
    if _shared["error"] is not None:  # fail fast: do not retry a start that failed this session
        pytest.fail(_shared["error"], pytrace=False)
    if _shared["control_plane"] is None:
        try:
            workdir = tmp_path_factory.mktemp("k8s-control-plane")
            cp = ControlPlane(workdir=workdir, keep_workdir=bool(os.environ.get("AISTACK_K8S_KEEP")))
            cp.start()
        except (BinariesMissing, StartFailed) as e:
            _shared["error"] = f"test Kubernetes control plane unavailable: {e}"
        if _shared["error"] is not None:
            pytest.fail(_shared["error"], pytrace=False)
        _shared["control_plane"] = cp
    _shared["users"] += 1
    return _shared["control_plane"]


def _release() -> None:
    _shared["users"] -= 1
    if _shared["users"] == 0 and _shared["control_plane"] is not None:
        _shared["control_plane"].stop()
        _shared["control_plane"] = None


@pytest.fixture(scope="session")
def k8s_control_plane(tmp_path_factory) -> ControlPlane:
    """A running control plane (etcd, apiserver, controller-manager, scheduler, kwok with fake
    GPU nodes from tests/k8s/kwok/nodes.yaml): a ControlPlane with .kubeconfig, .server, .kubectl(),
    .kubectl_json(), .apply(), .create_namespace(), .add_nodes(), .helm(), .env(), .logs()."""
    cp = _acquire(tmp_path_factory)
    try:
        yield cp
    finally:
        _release()


@pytest.fixture(scope="session")
def kubeconfig(k8s_control_plane) -> str:
    """Path of a cluster-admin kubeconfig (certificates embedded) for the test control plane."""
    return str(k8s_control_plane.kubeconfig)
