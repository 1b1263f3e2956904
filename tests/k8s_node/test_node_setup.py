"""What the real node and its images need, checked without starting them."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from job_runner.executors.base import JobSpec
from job_runner.executors.kubernetes import KubernetesExecutor
from tests.k8s import node as node_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_missing_runtime_fails_with_the_command_that_installs_it(monkeypatch):
    """Closes: a real-node test group must fail with a clear message when something is missing, never skip."""
    monkeypatch.setitem(node_module.HOST_TOOLS, "runc", "/nonexistent/runc")
    with pytest.raises(node_module.NodeUnavailable) as e:
        node_module.check_host()
    assert "runc (/nonexistent/runc)" in str(e.value)
    assert "apt-get install containerd runc containernetworking-plugins" in str(e.value)


def test_pack_writes_an_oci_layout_and_a_docker_manifest(tmp_path):
    """Closes: images without a registry: the packer's archive is an OCI layout and docker-load compatible,
    with overlayfs whiteouts turned into OCI ones and reproducible bytes."""
    layer = tmp_path / "layer"
    (layer / "opt").mkdir(parents=True)
    (layer / "opt" / "hello").write_text("hi\n")
    os.mknod(layer / "opt" / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # an overlayfs whiteout
    out = []
    for n in (1, 2):
        path = tmp_path / f"img{n}.tar"
        subprocess.run(["python3", os.path.join(REPO, "images", "pack.py"), "--out", str(path), "--name",
                        "aistack.local/test:1", "--layer", str(layer), "--user", "1000:100"],
                       check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})
        out.append(path.read_bytes())
    assert out[0] == out[1]  # reproducible
    with tarfile.open(tmp_path / "img1.tar") as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))
        docker = json.load(tar.extractfile("manifest.json"))
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))
        with tarfile.open(fileobj=tar.extractfile(docker[0]["Layers"][0])) as lt:
            layer_names = lt.getnames()
    assert "oci-layout" in names
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "aistack.local/test:1"
    assert docker[0]["RepoTags"] == ["aistack.local/test:1"]
    assert config["config"]["User"] == "1000:100" and config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert "opt/hello" in layer_names and "opt/.wh.gone" in layer_names and "opt/gone" not in layer_names


def test_job_pods_take_the_executors_node_selector_and_tolerations():
    """Closes: job pods could not be steered to a pool of job nodes (e.g. the real node beside the kwok GPU
    nodes): KubernetesExecutor.node_selector and .tolerations go into every pod, the slice's own selector wins."""
    ex = KubernetesExecutor(job_token_secret="k", node_selector={"aistack.test/pool": "real"},
                            tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
    job = JobSpec(id=7, name="n", user="alice", tenant="team-a", profile="cpu", attempt=1, notebook="{}",
                  request={"kind": "cpu", "cpu_milli": 500, "memory_mib": 512})
    spec = ex.job_manifest(job, {"node": "aistack-node-0"})["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"aistack.test/pool": "real", "kubernetes.io/hostname": "aistack-node-0"}
    assert {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_a_claims_scan_pod_mounts_it_read_only_as_the_job_user_without_a_token():
    """The scan Job of a tenant's claim (tenant storage counted on Kubernetes): read-only mount, non-root, no
    service-account token, no fsGroup (a look must not make the kubelet re-own the volume), the executor's
    node selector and tolerations, and none of the labels the executor lists its notebook Jobs by."""
    from job_runner.executors.k8s_manifest import INSTANCE_LABEL, JOB_ID_LABEL
    from job_runner.executors.k8s_storage_scan import SCAN_LABEL, scan_manifest

    ex = KubernetesExecutor(job_token_secret="k", image="aistack.local/job:1", node_selector={"pool": "real"},
                            tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
    job = scan_manifest(ex, "team-a", "aistack-team-a", "aistack-storage-team-a", "scan-1", 120)
    assert job["spec"]["activeDeadlineSeconds"] == 120 and job["spec"]["backoffLimit"] == 0
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[SCAN_LABEL] == "team-a" and INSTANCE_LABEL not in labels and JOB_ID_LABEL not in labels
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert "fsGroup" not in pod["securityContext"]
    assert pod["volumes"] == [{"name": "claim", "persistentVolumeClaim": {"claimName": "aistack-storage-team-a",
                                                                          "readOnly": True}}]
    (c,) = pod["containers"]
    assert c["volumeMounts"] == [{"name": "claim", "mountPath": "/data", "readOnly": True}]
    assert c["command"] == ["python", "-m", "job_runner.binding.storage_scan", "/data"]
    assert c["image"] == "aistack.local/job:1" and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["nodeSelector"] == {"pool": "real"} and pod["tolerations"][0]["key"] == "dedicated"
