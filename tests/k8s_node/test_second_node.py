"""A second real node on this machine beside the first (tests/k8s/node.py): its own containerd, kubelet root,
ports, CNI bridge and subnet, and its own cgroupRoot, so the two kubelets never take each other's pods' cgroups
for orphans. Then the second node dies (kubelet, containerd and its containers killed at once, nothing told to
the API server) while the first goes on, and stopping it undoes only what was its own; the first node's
teardown (the fixture) then restores the host. The ground for playing a node loss: what the job system does
when the node goes away is issue 11's next step (docs/kubernetes.md, "Restart from checkpoint")."""
from __future__ import annotations

import glob
import os
import time
from pathlib import Path

from tests.k8s.node import RealNode

SECOND = "aistack-node-1"


def _phase(cp, pod: str) -> str | None:
    return cp.kubectl_json("get", "pod", pod, "-n", "default")["status"].get("phase")


def _pids(cgroup_top: str) -> list[int]:
    out = []
    for procs in glob.glob(f"/sys/fs/cgroup/pids/{cgroup_top}/**/cgroup.procs", recursive=True):
        out += [int(p) for p in Path(procs).read_text().split()]
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]  # R, S, Z (not reaped) ...
    except OSError:
        return "gone"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := predicate()):
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_second_real_node_runs_pods_beside_the_first_and_dies_alone(k8s_control_plane, real_node, images):
    cp = k8s_control_plane
    second = RealNode(cp, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"], name=SECOND,
                      pod_subnet="10.88.1.0/24", bridge="aistack1", cgroup_root=SECOND,
                      labels={"aistack.test/pool": "second"})  # no other test's pods land here
    pods = {"first": real_node.name, "second": SECOND}
    try:
        second.start()
        for pod, node in pods.items():
            cp.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"on-{pod}", "namespace": "default"},
                      "spec": {"nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": False,
                               "containers": [{"name": "pause", "image": images["AISTACK_PAUSE_IMAGE"],
                                               "imagePullPolicy": "Never"}]}})
        _wait(lambda: all(_phase(cp, f"on-{p}") == "Running" for p in pods), 60, "a pod Running on each node")
        # each kubelet keeps its pods under its own cgroup root
        assert _pids(SECOND) and _pids("kubepods"), (_pids(SECOND), _pids("kubepods"))
        first_pids = _pids("kubepods")

        second.kill()
        # SIGKILLed: gone from the node's cgroups once the kernel has reaped them
        try:
            _wait(lambda: _pids(SECOND) == [], 30, "the second node's container processes to end")
        except AssertionError as e:
            raise AssertionError(f"{e}: left {[(p, _state(p)) for p in _pids(SECOND)]}") from None
        node = cp.kubectl_json("get", "node", SECOND)  # the API server was told nothing: the node is still there
        assert node["metadata"]["name"] == SECOND
        # the first node and its pod go on: same processes, still Running, its kubelet Ready
        assert all(os.path.exists(f"/proc/{p}") for p in first_pids), "killing the second node hit the first's pods"
        assert _phase(cp, "on-first") == "Running"
        cp.wait_nodes_ready([real_node.name], 30)

        problems = second.stop()
        assert problems == [], problems
        assert not Path("/sys/class/net/aistack1").exists(), "the second node's bridge is left"
        assert not glob.glob(f"/sys/fs/cgroup/*/{SECOND}"), "the second node's cgroup root is left"
        assert cp.kubectl("get", "node", SECOND, check=False).returncode != 0, "the second node's Node is left"
        # stopping the second undid nothing of the first's: its pod's network namespace and processes are there
        assert all(os.path.exists(f"/proc/{p}") for p in first_pids)
        assert _phase(cp, "on-first") == "Running"
    finally:
        second.stop()
        cp.kubectl("delete", "pod", "on-first", "on-second", "-n", "default", "--grace-period=0", "--force",
                   "--ignore-not-found", check=False)
