"""Fixtures of the real-node tests: the shared test control plane (tests/k8s), our images
(scripts/images.sh, cached by the hash of their inputs) and one real node (tests/k8s/node.py:
kubelet + containerd + runc + CNI bridge) beside kwok's fake GPU nodes.

Nothing here skips: a missing kubelet, containerd, runc, CNI plugin, mmdebstrap or root fails the tests
with the command that installs or builds it.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.k8s.controlplane import StartFailed
from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401
from tests.k8s.node import NodeUnavailable, RealNode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """{AISTACK_PAUSE_IMAGE, AISTACK_PAUSE_ARCHIVE, AISTACK_JOB_IMAGE, AISTACK_JOB_ARCHIVE}: built from this
    checkout by scripts/images.sh (seconds when cached; the first build takes minutes)."""
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "images.sh"), "pause", "job"],
                          capture_output=True, text=True, timeout=1800, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"scripts/images.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    found = dict(line.split("=", 1) for line in proc.stdout.split() if line.startswith("AISTACK_"))
    for key in ("AISTACK_PAUSE_IMAGE", "AISTACK_PAUSE_ARCHIVE", "AISTACK_JOB_IMAGE", "AISTACK_JOB_ARCHIVE"):
        if key not in found:
            pytest.fail(f"scripts/images.sh printed no {key}:\n{proc.stdout}\n{proc.stderr[-2000:]}", pytrace=False)
    return found


@pytest.fixture(scope="package")
def real_node(k8s_control_plane, images):
    """A started RealNode with the job image imported. Stopped after this folder's tests (the later
    kwok-only test folders see the cluster as before); its teardown fails if the host is not restored."""
    try:
        node = RealNode(k8s_control_plane, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"])
        node.start()
        node.import_image(images["AISTACK_JOB_ARCHIVE"])
    except (NodeUnavailable, StartFailed) as e:
        if "node" in locals():
            node.stop()
        pytest.fail(f"the real Kubernetes node is unavailable: {e}", pytrace=False)
    try:
        yield node
    finally:
        problems = node.stop()
        if problems:
            pytest.fail("stopping the real node left the host changed: " + "; ".join(problems), pytrace=False)
