"""Tenant storage counted on Kubernetes (issue 15 C: "storage mounted and counted in both deployments").

The real aistack service with the KubernetesExecutor and ``KubeStorage.mount_claims``; team-a's claim is
bound to a hostPath PersistentVolume (this cluster has no provisioner: static provisioning, as in
tests/storage/test_kube_cluster.py) whose folder holds files this test wrote. ``GET storage?fresh=1`` makes
the service measure every tenant's claim with a scan Job: a real pod on the real node mounts the claim
read-only and runs the embedded deployment's own scan; the service shows what it found against the quota,
the same bytes the scan gives on the host folder (hard links once), and deletes the Job. team-b has no
claim yet: its row says so instead of a number.
"""
from __future__ import annotations

import os
import shutil
import uuid

import pytest
import yaml

from job_runner.binding.storage import scan_usage
from job_runner.binding.storage_kube import tenant_claim
from job_runner.executors.k8s_storage_scan import SCAN_LABEL
from tests.job_service.helpers import ServiceProcess, free_port
from tests.k8s_node.restart import wait

pytestmark = pytest.mark.k8s
NS = "aistack-team-a"


@pytest.fixture
def claim_folder(k8s_control_plane):
    """team-a's claim bound to a hostPath volume: (its host folder, the claim's name)."""
    cp = k8s_control_plane
    folder = f"/tmp/aistack-claim-{uuid.uuid4().hex[:8]}"
    os.makedirs(os.path.join(folder, "run-1"), mode=0o755)
    os.chmod(folder, 0o755)
    for i, size in enumerate((100_000, 250_000, 4096)):
        with open(os.path.join(folder, "run-1", f"part-{i}.bin"), "wb") as f:
            f.write(os.urandom(size))
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("hello\n" * 1000)
    os.link(os.path.join(folder, "run-1", "part-1.bin"), os.path.join(folder, "same-as-part-1.bin"))
    for root, dirs, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    claim, pv = tenant_claim("team-a"), f"aistack-scan-{uuid.uuid4().hex[:8]}"
    cp.create_namespace(NS)
    cp.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
              "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                       "storageClassName": "aistack-scan", "persistentVolumeReclaimPolicy": "Retain",
                       "hostPath": {"path": folder}, "claimRef": {"namespace": NS, "name": claim}}})
    cp.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": NS},
              "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "aistack-scan", "volumeName": pv,
                       "resources": {"requests": {"storage": "5Gi"}}}})
    wait(lambda: cp.kubectl_json("get", "pvc", claim, "-n", NS).get("status", {}).get("phase") == "Bound", 60,
         f"claim {claim} to bind")
    try:
        yield folder, claim
    finally:
        # this control plane runs no pvc/pv-protection controller: finalizers off, else Terminating forever
        for kind, name, where in (("pvc", claim, ["-n", NS]), ("pv", pv, [])):
            cp.kubectl("delete", kind, *where, name, "--wait=false", check=False)
            cp.kubectl("patch", kind, *where, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                       check=False)
        cp.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=90s", check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def storage_service(tmp_path, k8s_control_plane, real_node, images):
    cp = k8s_control_plane
    port = free_port()
    deployment = {"tenants": [{"name": "team-a"}, {"name": "team-b"}],
                  "profiles": [{"slug": "cpu", "display_name": "CPU",
                                "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 512}}],
                  "inventory": [{"name": real_node.name, "cpu_milli": 2000, "memory_mib": 4096}]}
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deployment))
    data = tmp_path / "data"
    config = {"KubernetesExecutor": {
        "kubeconfig": str(cp.kubeconfig), "image": images["AISTACK_JOB_IMAGE"], "image_pull_policy": "Never",
        "service_url": f"http://{real_node.ip}:{port}/services/aistack/api/", "create_namespaces": False,
        # scan pods go where job pods go: here the real node (kwok's nodes run no container)
        "node_selector": {"kubernetes.io/hostname": real_node.name}},
        "KubeStorage": {"mount_claims": True, "storage_class": "aistack-scan", "access_modes": ["ReadWriteOnce"],
                        "scan_interval_s": 0, "scan_timeout_s": 120},
        "TenantStorage": {"default_quota_gib": 1.0}}
    svc = ServiceProcess(str(data), f"sqlite:///{data / 'aistack.sqlite'}", str(tmp_path / "deploy.yaml"), port=port,
                         config=config, extra_args=("--executor=job_runner.executors.kubernetes.KubernetesExecutor",
                                                    "--ip=0.0.0.0", "--AIStackService.validate_kernels=False"))
    svc.start(timeout=60)
    try:
        yield svc
    finally:
        svc.stop()


def test_a_tenants_claim_is_measured_by_a_scan_pod_and_shown_against_its_quota(k8s_control_plane, claim_folder,
                                                                             storage_service):
    cp, (folder, claim), svc = k8s_control_plane, claim_folder, storage_service
    s = svc.session()
    before = s.get(svc.api + "storage").json()["items"]
    assert [u["measured_at"] for u in before] == [None, None], before  # nothing measured yet: said, not 0 as fact
    assert s.get(svc.api + "storage?fresh=1").status_code == 200  # starts the scans (not waited for)

    def measured():
        items = {u["tenant"]: u for u in s.get(svc.api + "storage").json()["items"]}
        return items if items["team-a"]["measured_at"] and items["team-b"]["message"] else None
    items = wait(measured, 180, f"the scan of {claim} (service log: {svc.log_path})")
    expect = scan_usage(folder)  # the same scan on the host's side of the volume
    a = items["team-a"]
    # four files: the hard link is the same inode as part-1.bin, counted once (as du does)
    assert (a["used_bytes"], a["files"], a["partial"]) == (expect["bytes"], 4, False) == (a["used_bytes"], expect["files"], False), (a, expect)
    assert a["claim"] == claim and a["namespace"] == NS and a["message"] is None, a
    assert a["quota_gib"] == 1.0 and 0 < a["used_share"] < 0.01 and "scan pod" in a["enforcement"], a
    b = items["team-b"]
    assert b["measured_at"] is None and b["used_bytes"] == 0, b
    assert "no claim 'aistack-storage-team-b' in namespace 'aistack-team-b'" in b["message"], b
    # the scan Job is gone once read (its pods with it)
    wait(lambda: not cp.kubectl_json("get", "jobs", "-n", NS, "-l", SCAN_LABEL)["items"], 60, "the scan Job to go")
