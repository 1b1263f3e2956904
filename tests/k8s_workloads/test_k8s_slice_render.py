"""Rendering of GPU slices into Kubernetes objects, without a cluster.

Real kubespawner (KubeGPUSpawner.get_pod_manifest) and real kubernetes_asyncio models; the cluster tests
(test_k8s_workloads_cluster.py) then send the same objects to a real API server and scheduler.
"""
import asyncio
import json

import pytest
from kubernetes_asyncio.client import ApiClient
from tornado import web
from traitlets.config import Config

from job_runner.executors.base import FAILED, RUNNING, STARTING, SUCCEEDED, JobSpec
from job_runner.executors.kubernetes import KubernetesExecutor
from job_runner.pod import check_job_token, job_token
from job_runner.scheduling import Assignment, ProfileCatalog, Quota, SliceRequest
from job_runner.binding.kube import SliceNotSupported, SliceRenderer, label_value

WHOLE = SliceRequest(kind="whole", gpus=2, gpu_models=("A100-80GB",), cpu_milli=4000, memory_mib=16384)
SHARE = SliceRequest(kind="share", gpu_milli=250, gpu_mem_mib=4096, gpu_models=("T4",), cpu_milli=1000, memory_mib=4096)
MIG = SliceRequest(kind="mig", mig_profile="1g.10gb", gpu_models=("A100-80GB",), cpu_milli=1000, memory_mib=8192)
CPU = SliceRequest(kind="cpu", cpu_milli=500, memory_mib=1024)


# -- SliceRenderer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend, request_, expected", [
    ("whole", WHOLE, {"nvidia.com/gpu": "2"}),
    ("mig", WHOLE, {"nvidia.com/gpu": "2"}),
    ("mig", MIG, {"nvidia.com/mig-1g.10gb": "1"}),
    ("time-slice", SHARE, {"nvidia.com/gpu.shared": "1"}),
    ("time-slice", SliceRequest(kind="share", gpu_milli=500), {"nvidia.com/gpu.shared": "2"}),
    ("hami", SHARE, {"nvidia.com/gpu": "1", "nvidia.com/gpucores": "25", "nvidia.com/gpumem": "4096"}),
    ("hami", WHOLE, {"nvidia.com/gpu": "2"}),
    ("whole", CPU, {}),
])
def test_gpu_resources_per_backend(backend, request_, expected):
    assert SliceRenderer(backend=backend).gpu_resources(request_) == expected


@pytest.mark.parametrize("backend, request_", [("whole", SHARE), ("whole", MIG), ("time-slice", MIG), ("hami", MIG),
                                               ("mig", SHARE)])
def test_backend_refuses_what_it_cannot_express(backend, request_):
    renderer = SliceRenderer(backend=backend)
    with pytest.raises(SliceNotSupported, match=backend):
        renderer.render(request_, tenant="t")
    assert not renderer.supports(request_)


def test_render_placement_labels_and_annotations():
    renderer = SliceRenderer(backend="time-slice", kueue_queue_name_template="{tenant}-queue")
    asg = Assignment.from_dict({"node": "kwok-t4-shared-0", "gpu_indices": [1], "gpu_milli": 250})
    k = renderer.render(SHARE, tenant="Team A", profile="t4/quarter", assignment=asg)
    # GFD marks time-sliced GPUs with -SHARED; the core's node choice is kept.
    assert k.node_selector == {"nvidia.com/gpu.product": "Tesla-T4-SHARED", "kubernetes.io/hostname": "kwok-t4-shared-0"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k.tolerations
    assert k.labels["aistack.io/tenant"] == "Team-A"
    assert k.labels["aistack.io/profile"] == "t4-quarter"
    assert k.labels["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    assert json.loads(k.annotations["aistack.io/slice"])["gpu_milli"] == 250
    assert json.loads(k.annotations["aistack.io/assignment"])["node"] == "kwok-t4-shared-0"
    assert k.requests == {"cpu": "1000m", "memory": "4096Mi"}
    assert k.limits["memory"] == "4096Mi" and k.limits["nvidia.com/gpu.shared"] == "1"


def test_several_models_become_a_node_affinity_and_any_model_none():
    renderer = SliceRenderer(backend="whole", pin_to_assigned_node=False)
    k = renderer.render(SliceRequest(kind="whole", gpus=1, gpu_models=("A100-80GB", "H100-80GB")), tenant="t")
    assert not k.node_selector
    values = k.node_affinity_terms[0]["matchExpressions"][0]["values"]
    assert "NVIDIA-A100-SXM4-80GB" in values and "NVIDIA-H100-80GB-HBM3" in values
    k = renderer.render(SliceRequest(kind="whole", gpus=1), tenant="t")
    assert not k.node_selector and not k.node_affinity_terms


def test_mig_single_strategy_selects_the_mig_product_label():
    k = SliceRenderer(backend="mig", mig_strategy="single").render(MIG, tenant="t")
    assert k.limits["nvidia.com/gpu"] == "1"
    assert k.node_affinity_terms[0]["matchExpressions"][0]["values"][0] == "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"


def test_resource_quota_is_a_cap_per_resource():
    q = Quota(gpu_milli=2500, cpu_milli=8000, memory_mib=32768)
    assert SliceRenderer(backend="whole").resource_quota_hard(q) == {
        "requests.cpu": "8000m", "requests.memory": "32768Mi", "requests.nvidia.com/gpu": "2"}
    assert SliceRenderer(backend="time-slice").resource_quota_hard(q)["requests.nvidia.com/gpu.shared"] == "10"
    assert SliceRenderer(backend="whole").resource_quota_hard(Quota()) == {}


def test_label_values_are_valid():
    assert label_value("alice@example.com") == "alice-example.com"
    assert len(label_value("x" * 100)) == 63
    assert label_value("-a-") == "a"


# -- KubeGPUSpawner with real kubespawner objects ------------------------------------------------------

def _spawner(backend, offline_host, **config):
    from spawner.kube import KubeGPUSpawner

    c = Config()
    c.SliceRenderer.backend = backend
    c.KubeSpawner.tolerations = [{"key": "site", "operator": "Exists"}]
    c.KubeSpawner.k8s_api_host = offline_host
    for k, v in config.items():
        setattr(c.KubeGPUSpawner, k, v)
    return KubeGPUSpawner(_mock=True, config=c)


def _allocate(spawner, slug, request: SliceRequest, assignment: dict, image=None, tenant="team-a"):
    """What the mixin stores after the service's POST allocations answered (the answer's shape)."""
    spawner.tenant, spawner.profile_slug = tenant, slug
    spawner.user_options = {"tenant": tenant, "profile": slug}
    spawner.allocation = {"id": 11, "state": "allocated", "assignment": assignment,
                          "profile": {"slug": slug, "display_name": slug, "request": request.to_dict(), "image": image}}


async def _pod(spawner) -> dict:
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as api:
        return api.sanitize_for_serialization(pod)


@pytest.mark.parametrize("backend, request_, node, resource", [
    ("whole", WHOLE, "kwok-a100-0", ("nvidia.com/gpu", "2")),
    ("mig", MIG, "kwok-a100-mig-0", ("nvidia.com/mig-1g.10gb", "1")),
    ("time-slice", SHARE, "kwok-t4-shared-0", ("nvidia.com/gpu.shared", "1")),
    ("hami", SliceRequest(kind="share", gpu_milli=500, gpu_mem_mib=8192, gpu_models=("A30",)), "kwok-a30-hami-0",
     ("nvidia.com/gpumem", "8192")),
])
async def test_spawner_pod_manifest_per_backend(offline_kubeconfig, backend, request_, node, resource):
    s = _spawner(backend, offline_kubeconfig)
    _allocate(s, "p1", request_, {"node": node, "gpu_indices": [3], "gpu_milli": 500}, image="example/gpu:1")
    pod = await _pod(s)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"][resource[0]] == resource[1]
    assert container["image"] == "example/gpu:1"
    assert pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] == node
    assert {"key": "site", "operator": "Exists"} in pod["spec"]["tolerations"]  # configured ones kept
    labels = pod["metadata"]["labels"]
    assert labels["aistack.io/tenant"] == "team-a" and labels["aistack.io/allocation"] == "11"
    assert labels["aistack.io/slice-kind"] == request_.kind
    assert json.loads(pod["metadata"]["annotations"]["aistack.io/slice"])["kind"] == request_.kind
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The device plugin picks the devices: host indices of the core must not reach the container.
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert env["AISTACK_TENANT"] == "team-a"
    assert json.loads(env["AISTACK_SLICE"])["node"] == node


async def test_spawner_overrides_do_not_leak_between_starts(offline_kubeconfig):
    s = _spawner("mig", offline_kubeconfig)
    _allocate(s, "mig", MIG, {"node": "kwok-a100-mig-0", "gpu_indices": [0], "gpu_milli": 143,
                              "mig": [0, "1g.10gb", 0]})
    pod = await _pod(s)
    assert "nvidia.com/mig-1g.10gb" in pod["spec"]["containers"][0]["resources"]["limits"]
    _allocate(s, "cpu", CPU, {"node": "kwok-cpu-0", "gpu_indices": [], "gpu_milli": 0})
    pod = await _pod(s)
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert not any(k.startswith("nvidia.com/") for k in limits), limits
    assert "nvidia.com/gpu.product" not in (pod["spec"].get("nodeSelector") or {})
    assert pod["metadata"]["labels"]["aistack.io/slice-kind"] == "cpu"


async def test_tenant_namespace_and_profile_list(offline_kubeconfig):
    s = _spawner("time-slice", offline_kubeconfig, tenant_namespaces=True)
    catalog = ProfileCatalog.from_config([
        {"slug": "quarter-t4", "display_name": "1/4 T4", "request": SHARE.to_dict()},
        {"slug": "mig-small", "display_name": "MIG 1g.10gb", "request": MIG.to_dict()},
        {"slug": "two-a100", "display_name": "2x A100", "request": WHOLE.to_dict(), "image": "example/big:2"},
    ])
    # The namespace is the tenant's own setting (the service's tenant record), never derived from its name.
    namespace = s.tenant_namespace({"name": "Team_B", "namespace": "research"}, "Team_B")
    profiles = s.kubespawner_profiles("Team_B", catalog.for_tenant("Team_B"), namespace=namespace)
    # MIG cannot be expressed on a time-slice cluster: hidden rather than failing at spawn time.
    assert [p["slug"] for p in profiles] == ["quarter-t4", "two-a100"]
    big = profiles[1]["kubespawner_override"]
    assert big["namespace"] == "research"
    with pytest.raises(web.HTTPError, match="no Kubernetes namespace"):
        s.tenant_namespace({"name": "Team_B", "namespace": None}, "Team_B")
    assert big["image"] == "example/big:2"
    assert big["extra_resource_limits"] == {"nvidia.com/gpu": "2"}
    assert big["mem_limit"] == 16384 * 1024 * 1024 and big["cpu_guarantee"] == 4.0


async def test_resource_quota_from_the_tenant_record(offline_kubeconfig):
    s = _spawner("whole", offline_kubeconfig)
    record = {"name": "team-a", "quotas": {"any": {"gpu_milli": 3000, "cpu_milli": None, "memory_mib": 65536}}}
    assert s.resource_quota_hard(record) == {"requests.memory": "65536Mi", "requests.nvidia.com/gpu": "3"}
    assert s.resource_quota_hard({"name": "nobody", "quotas": {}}) == {}


# -- KubernetesExecutor: the Job manifest and reading status ----------------------------------------

def _job(**kw) -> JobSpec:
    base = dict(id=42, name="train", user="alice@example.com", tenant="team-a", profile="quarter-t4", attempt=2,
                notebook="{}", timeout_s=600, request=SHARE.to_dict(), image="example/gpu:1")
    base.update(kw)
    return JobSpec(**base)


def test_job_manifest():
    ex = KubernetesExecutor(service_url="http://svc/services/aistack/api/", job_token_secret="s3cr3t-key",
                            ttl_seconds_after_finished=300, extra_env={"X": "y"})
    ex.renderer.backend = "time-slice"
    m = ex.job_manifest(_job(), {"node": "kwok-t4-shared-0", "gpu_indices": [1], "gpu_milli": 250})
    assert m["metadata"]["name"] == "aistack-job-42-2" and m["metadata"]["namespace"] == "aistack-team-a"
    labels = m["metadata"]["labels"]
    assert labels["aistack.io/job-id"] == "42" and labels["aistack.io/attempt"] == "2"
    assert labels["aistack.io/tenant"] == "team-a" and labels["aistack.io/user"] == "alice-example.com"
    spec = m["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 300
    assert spec["activeDeadlineSeconds"] == 600 + ex.deadline_grace_s
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    c = pod["containers"][0]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["command"] == ["python", "-m", "job_runner.pod"] and c["image"] == "example/gpu:1"
    assert c["resources"]["limits"]["nvidia.com/gpu.shared"] == "1"
    env = {e["name"]: e for e in c["env"]}
    # no local binding in a pod: the device plugin picks the devices and sets the sharing limits
    assert "CUDA_VISIBLE_DEVICES" not in env and "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in env
    assert env["X"]["value"] == "y"
    assert env["AISTACK_JOB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "aistack-job-42-2", "key": "token"}
    text = json.dumps(m)  # neither the key nor the token is in the manifest: the token is in a Secret
    assert "s3cr3t-key" not in text and job_token("s3cr3t-key", 42, 2) not in text
    assert pod["nodeSelector"]["kubernetes.io/hostname"] == "kwok-t4-shared-0"


def test_job_token():
    t = job_token("secret", 42, 2)
    assert check_job_token("secret", 42, 2, t)
    assert not check_job_token("secret", 42, 3, t)
    assert not check_job_token("other", 42, 2, t)
    assert not check_job_token("secret", 42, 2, None)


def _objs(job: dict, pods: list[dict]):
    async def go():
        async with ApiClient() as api:
            des = api._ApiClient__deserialize
            return des(job, "V1Job"), [des(p, "V1Pod") for p in pods]
    return asyncio.run(go())


def _pod_status(**status):
    return {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "notebook", "image": "i"}], "nodeName": "n1"}, "status": status}


def _terminated(code, reason):
    return {"containerStatuses": [{"name": "notebook", "image": "i", "imageID": "", "ready": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code, "reason": reason}}}]}


FAILED_JOB = {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True",
                                                                    "reason": "BackoffLimitExceeded"}]}}


@pytest.mark.parametrize("job, pod_status, state, cls, reason", [
    ({"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}},
     {"phase": "Succeeded"}, SUCCEEDED, None, None),
    ({"metadata": {"name": "j"}, "status": {"active": 1}}, {"phase": "Running"}, RUNNING, None, None),
    (FAILED_JOB, {"phase": "Failed", **_terminated(137, "OOMKilled")}, FAILED, "kernel_died", "OOMKilled"),
    (FAILED_JOB, {"phase": "Failed", **_terminated(3, "Error")}, FAILED, "cell_error", "Error"),
    (FAILED_JOB, {"phase": "Failed", "reason": "Evicted", "message": "node low on memory"}, FAILED,
     "infrastructure", "Evicted"),
    (FAILED_JOB, {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                                                      "reason": "PreemptionByScheduler"}]},
     FAILED, "infrastructure", "Preempted"),
    ({"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Failed", "status": "True",
                                                            "reason": "DeadlineExceeded"}]}},
     {"phase": "Failed", "reason": "DeadlineExceeded"}, FAILED, "timeout", "DeadlineExceeded"),
])
def test_state_from_pod_status(job, pod_status, state, cls, reason):
    kjob, pods = _objs(job, [_pod_status(**pod_status)])
    st = KubernetesExecutor().state_of(kjob, pods)
    assert st.state == state
    if cls:
        assert st.failure["class"] == cls and st.failure["reason"] == reason


def test_termination_message_carries_the_pods_own_failure():
    detail = {"class": "cell_error", "message": "cell 3 raised ValueError: bad", "cell_index": 3, "ename": "ValueError"}
    status = _terminated(3, "Error")
    status["containerStatuses"][0]["state"]["terminated"]["message"] = json.dumps(detail)
    kjob, pods = _objs(FAILED_JOB, [_pod_status(phase="Failed", **status)])
    fail = KubernetesExecutor().state_of(kjob, pods).failure
    assert fail["ename"] == "ValueError" and fail["cell_index"] == 3


@pytest.mark.parametrize("pod_status, reason", [
    ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/5 nodes are available"}]}, "Unschedulable"),
    ({"phase": "Pending", "containerStatuses": [{"name": "notebook", "image": "bad:img", "imageID": "",
                                                 "ready": False, "restartCount": 0,
                                                 "state": {"waiting": {"reason": "ImagePullBackOff"}}}]},
     "ImagePullBackOff"),
])
def test_stuck_pods_fail_after_the_pending_timeout(pod_status, reason):
    kjob, pods = _objs({"metadata": {"name": "j"}, "status": {"active": 1}}, [_pod_status(**pod_status)])
    waiting = KubernetesExecutor(pending_timeout_s=3600).state_of(kjob, pods)
    assert waiting.state == STARTING and waiting.message
    ex = KubernetesExecutor(pending_timeout_s=0)
    ex.state_of(kjob, pods)
    st = ex.state_of(kjob, pods)
    assert st.state == FAILED and st.failure["reason"] == reason and st.failure["class"] == "infrastructure"


def test_token_key_is_the_services_when_unset():
    from traitlets import Unicode
    from traitlets.config import LoggingConfigurable

    class Service(LoggingConfigurable):
        job_token_secret = Unicode("service-key")

    assert KubernetesExecutor(parent=Service()).token_key() == "service-key"
    assert KubernetesExecutor(parent=Service(), job_token_secret="own").token_key() == "own"
    with pytest.raises(RuntimeError, match="job_token_secret"):
        KubernetesExecutor().token_key()


def test_names_and_namespaces_are_valid_and_per_instance():
    ex = KubernetesExecutor(instance="Prod_EU")
    assert ex.job_name(7, 1) == "prod-eu-job-7-1"
    assert ex.tenant_namespace("Team_A.ML") == "aistack-team-a-ml"
    # the tenant's record names its namespace: its Jobs go there (with its servers, RBAC and quota)
    assert ex.tenant_namespace("research", "research") == "research"
    ex.renderer.backend = "time-slice"
    assert ex.job_manifest(_job(namespace="research"), None)["metadata"]["namespace"] == "research"
    assert "aistack.io/instance=Prod_EU" in ex.selector(7) and "aistack.io/job-id=7" in ex.selector(7)


def test_core_inventory_from_gpu_feature_discovery_labels():
    import os

    import yaml

    from job_runner.scheduling import Inventory

    path = os.path.join(os.path.dirname(__file__), "..", "k8s", "kwok", "nodes.yaml")
    nodes = [d for d in yaml.safe_load_all(open(path)) if d]
    items = {i["name"]: i for i in SliceRenderer().inventory_config(nodes)}
    assert items["kwok-cpu-0"]["gpus"] == 0 and items["kwok-cpu-0"]["cpu_milli"] == 32000
    assert (items["kwok-a100-0"]["gpu_model"], items["kwok-a100-0"]["gpus"]) == ("A100-80GB", 8)
    assert items["kwok-a100-mig-0"]["mig_enabled"] and not items["kwok-a100-0"]["mig_enabled"]
    assert items["kwok-t4-shared-0"]["gpu_model"] == "T4"  # -SHARED dropped
    assert items["kwok-h100-0"]["memory_mib"] == 2 * 1024 * 1024  # 2Ti
    assert len(Inventory.from_config(list(items.values())).nodes) == len(nodes)
