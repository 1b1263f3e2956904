"""The test control plane itself: real kube-apiserver, controllers, scheduler; kwok fakes the nodes.

No physical GPU exists on this machine: GPUs are extended resources advertised by kwok-managed nodes
(as the NVIDIA device plugin / HAMi would), so scheduling and quota are real, containers are not.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.k8s.controlplane import BinariesMissing, ControlPlane, read_versions

pytestmark = pytest.mark.k8s


def wait_for(predicate, timeout=60.0, interval=0.3, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@pytest.fixture
def namespace(k8s_control_plane):
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_control_plane.create_namespace(name)
    yield name
    k8s_control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod(name, resources=None, node_selector=None, annotations=None):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "containers": [{"name": "main", "image": "busybox",
                            "resources": {"limits": resources or {}}}],
            "nodeSelector": node_selector or {},
        },
    }


def job(name, resources=None, node_selector=None, annotations=None, backoff_limit=0):
    template = pod(name, resources, node_selector, annotations)
    template["spec"]["restartPolicy"] = "Never"
    del template["metadata"]["name"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"metadata": template["metadata"],
                                                              "spec": template["spec"]}},
    }


def test_versions_are_the_pinned_release(k8s_control_plane):
    expected = read_versions()["K8S_VERSION"]
    out = json.loads(k8s_control_plane.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == expected
    assert out["clientVersion"]["gitVersion"] == expected
    helm = k8s_control_plane.helm("version", "--short").stdout
    assert helm.startswith(read_versions()["HELM_VERSION"])


def test_components_are_healthy_with_rbac_on(k8s_control_plane):
    readyz = k8s_control_plane.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in readyz
    assert "[+]poststarthook/rbac/bootstrap-roles ok" in readyz
    # The Node and RBAC authorizers are on: an identity without a binding is refused.
    can = k8s_control_plane.kubectl("auth", "can-i", "list", "pods", "--as=nobody", check=False)
    assert can.stdout.strip() == "no"


def test_fake_gpu_nodes_carry_gpu_resources_and_gfd_labels(k8s_control_plane):
    nodes = {n["metadata"]["name"]: n for n in k8s_control_plane.kubectl_json("get", "nodes")["items"]}
    expect = {
        "kwok-a100-0": ("nvidia.com/gpu", "8", "NVIDIA-A100-SXM4-80GB"),
        "kwok-h100-0": ("nvidia.com/gpu", "8", "NVIDIA-H100-80GB-HBM3"),
        "kwok-a100-mig-0": ("nvidia.com/mig-1g.10gb", "14", "NVIDIA-A100-SXM4-80GB"),
        "kwok-t4-shared-0": ("nvidia.com/gpu.shared", "16", "Tesla-T4-SHARED"),
        "kwok-a30-hami-0": ("nvidia.com/gpumem", "98304", "NVIDIA-A30"),
    }
    for name, (resource, amount, product) in expect.items():
        node = nodes[name]
        assert node["status"]["allocatable"][resource] == amount, name
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == product
        assert "nvidia.com/gpu.memory" in node["metadata"]["labels"]
        assert "nvidia.com/gpu.count" in node["metadata"]["labels"]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
    assert nodes["kwok-a30-hami-0"]["status"]["allocatable"]["nvidia.com/gpucores"] == "400"
    assert "nvidia.com/gpu" not in nodes["kwok-cpu-0"]["status"]["allocatable"]


@pytest.mark.parametrize("resources,selector,expected_node", [
    ({"nvidia.com/gpu": "2"}, {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "kwok-h100-0"),
    ({"nvidia.com/mig-1g.10gb": "1"}, {}, "kwok-a100-mig-0"),
    ({"nvidia.com/gpu.shared": "1"}, {}, "kwok-t4-shared-0"),
    ({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"}, {}, "kwok-a30-hami-0"),
    ({}, {"aistack.test/pool": "cpu"}, "kwok-cpu-0"),
], ids=["whole-h100", "mig", "time-slice", "hami", "cpu"])
def test_scheduler_places_each_slice_kind_on_the_right_node(k8s_control_plane, namespace,
                                                           resources, selector, expected_node):
    cp = k8s_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod("server", resources, selector)))

    def running():
        p = cp.kubectl_json("get", "pod", "server", "-n", namespace)
        return p if p["status"].get("phase") == "Running" else None

    p = wait_for(running, what="pod Running")
    assert p["spec"]["nodeName"] == expected_node
    # Not owned by a Job: a server pod stays Running (kwok completes only Job pods).
    time.sleep(2.5)
    assert cp.kubectl_json("get", "pod", "server", "-n", namespace)["status"]["phase"] == "Running"


def test_job_runs_to_success_on_a_gpu_node(k8s_control_plane, namespace):
    cp = k8s_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        job("nb", {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"})))

    def finished():
        status = cp.kubectl_json("get", "job", "nb", "-n", namespace).get("status", {})
        return status if status.get("succeeded") == 1 else None

    status = wait_for(finished, what="Job succeeded")
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in status["conditions"])
    pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=nb")["items"]
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == "kwok-a100-0"
    assert pods[0]["status"]["phase"] == "Succeeded"
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_pod_logs_are_served_through_the_api_server(k8s_control_plane, namespace):
    """apiserver -> "kubelet" (kwok's TLS server at the node's InternalIP) -> kwok/pod.log."""
    cp = k8s_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job("logs", {"nvidia.com/gpu": "1"})))
    selector = "batch.kubernetes.io/job-name=logs"
    wait_for(lambda: cp.kubectl_json("get", "job", "logs", "-n", namespace).get("status", {}).get("succeeded"),
             what="Job succeeded")
    text = cp.kubectl("logs", "-n", namespace, "-l", selector, "-c", "main").stdout
    assert "simulated by kwok" in text


def test_annotated_job_pod_fails_with_the_given_reason(k8s_control_plane, namespace):
    cp = k8s_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job(
        "oom", {"nvidia.com/gpu": "1"},
        annotations={"aistack.test/fail-reason": "OOMKilled", "aistack.test/exit-code": "137"})))

    def failed():
        status = cp.kubectl_json("get", "job", "oom", "-n", namespace).get("status", {})
        return status if any(c["type"] == "Failed" and c["status"] == "True"
                             for c in status.get("conditions", [])) else None

    status = wait_for(failed, what="Job failed")
    assert status.get("succeeded", 0) == 0
    pods = cp.kubectl_json("get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=oom")["items"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


def test_pod_asking_more_gpus_than_any_node_has_is_unschedulable(k8s_control_plane, namespace):
    cp = k8s_control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod("big", {"nvidia.com/gpu": "64"})))

    def unschedulable():
        conds = cp.kubectl_json("get", "pod", "big", "-n", namespace)["status"].get("conditions", [])
        return [c for c in conds if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"]

    cond = wait_for(unschedulable, what="PodScheduled=False/Unschedulable")[0]
    assert "nvidia.com/gpu" in cond["message"]


def test_resource_quota_refuses_pods_over_the_tenant_gpu_quota(k8s_control_plane, namespace):
    cp = k8s_control_plane
    cp.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpus", "namespace": namespace},
              "spec": {"hard": {"requests.nvidia.com/gpu": "1"}}})
    # The resourcequota controller computes usage before admission can count against it.
    wait_for(lambda: cp.kubectl_json("get", "resourcequota", "gpus", "-n", namespace)
             .get("status", {}).get("used") is not None, what="quota status")
    over = cp.kubectl("apply", "-n", namespace, "-f", "-", check=False,
                      input=json.dumps(pod("two", {"nvidia.com/gpu": "2"})))
    assert over.returncode != 0
    assert "exceeded quota" in over.stderr
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod("one", {"nvidia.com/gpu": "1"})))


def test_service_account_tokens_are_signed_and_authorized_by_rbac(k8s_control_plane, namespace):
    cp = k8s_control_plane
    cp.kubectl("create", "serviceaccount", "worker", "-n", namespace)
    token = cp.kubectl("create", "token", "worker", "-n", namespace).stdout.strip()
    as_worker = ["--token", token, "--kubeconfig=/dev/null", f"--server={cp.server}",
                 f"--certificate-authority={cp.workdir / 'pki' / 'ca.crt'}"]
    kubectl = str(cp.bin["kubectl"])
    denied = subprocess.run([kubectl, *as_worker, "get", "pods", "-n", namespace], capture_output=True, text=True)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    cp.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
    cp.kubectl("create", "rolebinding", "worker-reads", "--role=pod-reader",
               f"--serviceaccount={namespace}:worker", "-n", namespace)
    wait_for(lambda: subprocess.run([kubectl, *as_worker, "get", "pods", "-n", namespace],
                                    capture_output=True).returncode == 0, what="RBAC grant")


def test_garbage_collector_deletes_the_pods_of_a_deleted_job(k8s_control_plane, namespace):
    cp = k8s_control_plane
    spec = job("gc", annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "600s"})
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(spec))
    selector = "batch.kubernetes.io/job-name=gc"
    wait_for(lambda: cp.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"], what="job pod")
    cp.kubectl("delete", "job", "gc", "-n", namespace, "--cascade=background")
    wait_for(lambda: not cp.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"],
             what="pods garbage-collected")


def test_missing_binaries_fail_with_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AISTACK_K8S_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BinariesMissing) as e:
        ControlPlane()
    assert "build.sh" in str(e.value) and "kube-apiserver" in str(e.value)
