"""KubeGPUSpawner and KubernetesExecutor on a real control plane (tests/k8s: kube-apiserver,
kube-controller-manager, kube-scheduler; kwok plays the kubelets of fake GPU nodes).

What is real: the API server (admission, ResourceQuota), the scheduler (extended GPU resources, node
selectors, tolerations), the Job and garbage-collector controllers, kubespawner, the job service's
scheduling loop (job_runner.controller.Controller) with its SQLite database, and the scheduling core.
What is simulated: containers. No GPU exists here, so kwok moves pods through their lifecycle:
Job pods complete after `pod-complete.stage.kwok.x-k8s.io/delay`, or fail with the reason in the
annotation `aistack.test/fail-reason` (tests/k8s/kwok/stages.yaml). The notebook inside the pod
(job_runner.pod) therefore does not run here; test_k8s_pod.py runs it for real outside Kubernetes.

The service's `POST allocations` is stood in for by `CoreAllocation` below: the same scheduling core
in-process (quota verdict, placement on the cluster's node names), answering in the service's shape.
"""
import asyncio
import itertools
import time
import uuid
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from job_runner.executors.kubernetes import INSTANCE_LABEL, JOB_ID_LABEL, KubernetesExecutor
from job_runner.scheduling import Tenant
from spawner.allocation import AllocationRefused
from job_runner.binding.kube import SliceRenderer
from tests.k8s_workloads.inprocess import PROFILES, CoreAllocation, InProcessKubeGPUSpawner

pytestmark = pytest.mark.k8s

@pytest.fixture
def cluster(k8s_control_plane, monkeypatch):
    """The control plane, with kubespawner's global client pointed at it."""
    from kubespawner.clients import load_config

    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION",
                        str(k8s_control_plane.kubeconfig))
    load_config.cache_clear()  # kubespawner caches its global client configuration per host
    return k8s_control_plane


@pytest.fixture
async def reflectors():
    yield
    # kubespawner's pod reflectors are class-level and bound to this test's event loop.
    from kubespawner import KubeSpawner

    await KubeSpawner._stop_all_reflectors()


def _nodes(cp) -> list[dict]:
    return [n for n in cp.kubectl_json("get", "nodes")["items"]
            if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"]


_users = itertools.count(1)


def _spawner(cp, core, backend, tenant="team-a", cls=InProcessKubeGPUSpawner, **config):
    c = Config()
    c.SliceRenderer.backend = backend
    c.KubeSpawner.k8s_api_host = cp.server
    c.KubeSpawner.namespace = "aistack-servers"
    c.KubeSpawner.start_timeout = 60
    c.KubeSpawner.http_timeout = 10
    c.KubeSpawner.image = "quay.io/jupyter/base-notebook:latest"
    for k, v in config.items():
        setattr(c.KubeGPUSpawner, k, v)
    InProcessKubeGPUSpawner.core = core
    s = cls(_mock=True, config=c)
    s.user.name = f"user{next(_users)}"
    s.user.groups = [SimpleNamespace(name=tenant)]
    s.pod_name = f"jupyter-{s.user.name}"
    return s


@pytest.mark.parametrize("backend, slug, product, resource", [
    ("whole", "a100-2", "NVIDIA-A100-SXM4-80GB", ("nvidia.com/gpu", "2")),
    ("mig", "mig-1g", "NVIDIA-A100-SXM4-80GB", ("nvidia.com/mig-1g.10gb", "1")),
    ("time-slice", "t4-quarter", "Tesla-T4-SHARED", ("nvidia.com/gpu.shared", "1")),
    ("hami", "a30-half", "NVIDIA-A30", ("nvidia.com/gpumem", "12288")),
])
async def test_server_lands_on_a_node_with_the_right_gpu(cluster, reflectors, backend, slug, product, resource):
    cluster.create_namespace("aistack-servers")
    core = CoreAllocation(_nodes(cluster), [Tenant.from_config({"name": "team-a"})])
    s = _spawner(cluster, core, backend)
    s.user_options = {"tenant": "team-a", "profile": slug}
    await asyncio.wait_for(s.start(), 90)
    try:
        pod = cluster.kubectl_json("get", "pod", "-n", "aistack-servers", s.pod_name)
        node = cluster.kubectl_json("get", "node", pod["spec"]["nodeName"])
        assert pod["status"]["phase"] == "Running"
        # The cluster's scheduler agreed with the core's placement, on a node of the right GPU type...
        assert pod["spec"]["nodeName"] == s.allocation["assignment"]["node"]
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == product
        # ...with the slice's resources (which that node really offers).
        name, qty = resource
        assert pod["spec"]["containers"][0]["resources"]["limits"][name] == qty
        assert name in node["status"]["allocatable"]
        assert pod["metadata"]["labels"]["aistack.io/tenant"] == "team-a"
        assert pod["metadata"]["labels"]["aistack.io/profile"] == slug
    finally:
        await s.stop(now=True)
    assert core.scheduler.running == {}  # the slice went back


async def test_over_quota_spawn_is_refused_before_any_pod(cluster, reflectors):
    cluster.create_namespace("aistack-servers")
    core = CoreAllocation(_nodes(cluster), [Tenant.from_config({"name": "small", "quotas": {"any": {"gpu_milli": 1000}}})])
    s = _spawner(cluster, core, "whole", tenant="small")
    s.user_options = {"tenant": "small", "profile": "a100-2"}
    with pytest.raises(AllocationRefused) as refused:
        await s.start()
    assert refused.value.status_code == 403
    assert "2000 gpu_milli" in refused.value.jupyterhub_message and "1000" in refused.value.jupyterhub_message
    pods = cluster.kubectl_json("get", "pods", "-n", "aistack-servers", "-l", f"hub.jupyter.org/username={s.user.name}")
    assert pods["items"] == []


async def test_resource_quota_refuses_a_second_time_inside_kubernetes(cluster, reflectors):
    # The service's quota is bypassed here on purpose (a generous core tenant): the tenant namespace's
    # ResourceQuota, enforced by the API server's admission, is the second line.
    core = CoreAllocation(_nodes(cluster), [Tenant.from_config({"name": "capped"})])
    s = _spawner(cluster, core, "whole", tenant="capped", tenant_namespaces=True, enforce_resource_quota=True)
    s.tenant_records = {"capped": {"name": "capped", "namespace": "aistack-capped",
                                   "quotas": {"any": {"gpu_milli": 1000, "cpu_milli": 8000, "memory_mib": 65536}}}}
    s.user_options = {"tenant": "capped", "profile": "a100-2"}
    with pytest.raises(Exception) as refused:
        await asyncio.wait_for(s.start(), 90)
    assert "exceeded quota" in str(refused.value) or "forbidden" in str(refused.value).lower(), refused.value
    quota = cluster.kubectl_json("get", "resourcequota", "-n", "aistack-capped", "aistack-tenant-quota")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "1"
    assert cluster.kubectl_json("get", "pods", "-n", "aistack-capped")["items"] == []
    assert core.scheduler.running == {}  # the failed start gave the slice back


# -- notebook jobs through the real scheduling loop ----------------------------------------------

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def _deployment(cluster):
    from aistack_hub.config import DeploymentConfig

    return DeploymentConfig.from_dict({
        "tenants": [{"name": "team-a", "quotas": {"any": {"gpu_milli": 16000}}}],
        "profiles": PROFILES,
        "inventory": SliceRenderer().inventory_config(_nodes(cluster)),
    })


def _db(tmp_path, deployment):
    from job_runner.db.tenants import seed_tenants
    from job_runner.db import open_database

    db = open_database(f"sqlite:///{tmp_path / 'jobs.db'}")
    seed_tenants(db, deployment.tenants)
    return db


def _submit(db, deployment, profile="t4-quarter", timeout_s=None) -> int:
    """A queued job row, as POST jobs writes it."""
    from job_runner.db import Job

    with db.session() as s:
        job = Job(name="nb", user="alice", tenant="team-a", profile=profile, notebook=NOTEBOOK, parameters={},
                  request=deployment.profiles.get(profile).request.to_dict(), timeout_s=timeout_s)
        s.add(job)
        s.flush()
        return job.id


def _job_row(db, job_id):
    from job_runner.db import Job

    with db.session() as s:
        row = s.get(Job, job_id)
        return SimpleNamespace(state=row.state, failure=row.failure, handle=row.handle, attempt=row.attempt,
                               events=[(e.from_state, e.to_state) for e in row.events])


def _executor(cluster, instance, **kw):
    # Each test is its own deployment (instance): job ids restart at 1 with each test's database.
    ex = KubernetesExecutor(kubeconfig=str(cluster.kubeconfig), service_url="http://aistack.invalid/api/",
                            job_token_secret="test-secret", instance=instance, **kw)
    ex.renderer.backend = "time-slice"
    return ex


async def _run_until(queue, db, job_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await queue.tick()
        row = _job_row(db, job_id)
        if row.state in states:
            return row
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {job_id} still {row.state} after {timeout}s: {row}")


def _k8s_jobs(cluster, job_id, instance):
    return cluster.kubectl_json("get", "jobs", "-A", "-l",
                                f"{JOB_ID_LABEL}={job_id},{INSTANCE_LABEL}={instance}")["items"]


@pytest.fixture
def instance(request):
    return "t-" + uuid.uuid4().hex[:8]


async def test_job_runs_as_a_kubernetes_job_and_succeeds(cluster, tmp_path, instance):
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance)
    queue = Controller(db, deployment, ex)
    job_id = _submit(db, deployment)
    try:
        row = await _run_until(queue, db, job_id, ("running",))
        kjob = _k8s_jobs(cluster, job_id, instance)[0]
        assert kjob["metadata"]["namespace"] == "aistack-team-a"
        pod_spec = kjob["spec"]["template"]["spec"]
        assert pod_spec["automountServiceAccountToken"] is False and pod_spec["securityContext"]["runAsNonRoot"]
        row = await _run_until(queue, db, job_id, ("succeeded", "failed"))
        assert row.state == "succeeded", row.failure
        pods = cluster.kubectl_json("get", "pods", "-n", "aistack-team-a", "-l",
                                    f"batch.kubernetes.io/job-name={kjob['metadata']['name']}")["items"]
        assert pods and pods[0]["status"]["phase"] == "Succeeded"
        node = cluster.kubectl_json("get", "node", pods[0]["spec"]["nodeName"])
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "Tesla-T4-SHARED"
        # The token reached the cluster as a Secret owned by the Job (deleted with it).
        secret = cluster.kubectl_json("get", "secret", "-n", "aistack-team-a", kjob["metadata"]["name"])
        assert secret["metadata"]["ownerReferences"][0]["uid"] == kjob["metadata"]["uid"]
    finally:
        queue.stop()
        await ex.close()


async def test_cancelled_job_deletes_its_kubernetes_job(cluster, tmp_path, instance):
    from job_runner.db import Job
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance, extra_pod_annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "300s"})
    queue = Controller(db, deployment, ex)
    job_id = _submit(db, deployment)
    try:
        await _run_until(queue, db, job_id, ("running",))
        assert len(_k8s_jobs(cluster, job_id, instance)) == 1
        with db.session() as s:  # what POST jobs/{id}/cancel writes
            s.get(Job, job_id).cancel_requested = 1
        row = await _run_until(queue, db, job_id, ("cancelled",))
        assert row.failure["class"] == "cancelled"
        deadline = time.monotonic() + 30
        while _k8s_jobs(cluster, job_id, instance) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert _k8s_jobs(cluster, job_id, instance) == []
    finally:
        queue.stop()
        await ex.close()


async def test_service_restart_mid_run_readopts_the_running_job(cluster, tmp_path, instance):
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    slow = {"pod-complete.stage.kwok.x-k8s.io/delay": "12s"}
    ex1 = _executor(cluster, instance, extra_pod_annotations=slow)
    first = Controller(db, deployment, ex1, replica_id="first")
    job_id = _submit(db, deployment)
    await _run_until(first, db, job_id, ("running",))
    uid = _k8s_jobs(cluster, job_id, instance)[0]["metadata"]["uid"]
    # The service goes away mid-run (its loop and its client), and a new one starts on the same database.
    first.stop()
    await ex1.close()
    ex2 = _executor(cluster, instance, extra_pod_annotations=slow)
    second = Controller(db, deployment, ex2, replica_id="second")
    try:
        row = await _run_until(second, db, job_id, ("succeeded", "failed"), timeout=60)
        assert row.state == "succeeded", row.failure
        jobs = _k8s_jobs(cluster, job_id, instance)
        assert [j["metadata"]["uid"] for j in jobs] == [uid]  # adopted, not started twice
        assert row.attempt == 1 and row.events.count(("admitted", "running")) == 1
    finally:
        second.stop()
        await ex2.close()


@pytest.mark.parametrize("annotations, cls, reason, attempts", [
    ({"aistack.test/fail-reason": "OOMKilled", "aistack.test/exit-code": "137"}, "kernel_died", "OOMKilled", 1),
    # an eviction is a run the platform lost: restarted Controller.lost_run_restarts (2) times although the
    # job asks for no retries; every pod of this test is evicted, so the third attempt's reason is final
    ({"aistack.test/fail-reason": "Evicted"}, "infrastructure", "Evicted", 3),
])
async def test_failure_reason_comes_from_the_pod_status(cluster, tmp_path, instance, annotations, cls, reason,
                                                        attempts):
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance, extra_pod_annotations=annotations)
    queue = Controller(db, deployment, ex)
    job_id = _submit(db, deployment)
    try:
        row = await _run_until(queue, db, job_id, ("failed",))
        assert row.failure["class"] == cls and row.failure["reason"] == reason, row.failure
        assert row.attempt == attempts, (row.attempt, row.events)
    finally:
        queue.stop()
        await ex.close()


async def test_unschedulable_job_fails_with_the_reason(cluster, tmp_path, instance):
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance, pending_timeout_s=2)
    # A product no node has: the API server accepts the Job, the scheduler finds no node.
    ex.renderer.product_labels = {**ex.renderer.product_labels, "T4": ["Tesla-T4-NOWHERE"]}
    queue = Controller(db, deployment, ex)
    job_id = _submit(db, deployment)
    try:
        row = await _run_until(queue, db, job_id, ("failed",), timeout=60)
        assert row.failure["reason"] == "Unschedulable", row.failure
    finally:
        queue.stop()
        await ex.close()


# -- the whole path through the real aistack service -------------------------------------------------

async def test_spawn_through_the_real_service_quota_then_pod(cluster, reflectors, tmp_path):
    """KubeGPUSpawner -> POST allocations of the real service (quota, placement) -> the pod on the node
    the service chose; a second spawn over the tenant's quota is refused by the service, no pod."""
    from spawner.kube import KubeGPUSpawner
    from tests.k8s_workloads.service_proc import HUB_TOKEN, aistack_service

    cluster.create_namespace("aistack-servers")
    deployment = {"tenants": [{"name": "team-s", "quotas": {"any": {"gpu_milli": 2000}}}], "profiles": PROFILES,
                  "inventory": SliceRenderer().inventory_config(_nodes(cluster))}
    with aistack_service(tmp_path, deployment) as svc:
        spawners = []
        for _ in range(2):
            s = _spawner(cluster, None, "whole", tenant="team-s", cls=KubeGPUSpawner)  # allocations over HTTP
            s.aistack_api_url, s.aistack_token, s.wait_for_gpu = svc["api"], HUB_TOKEN, False
            s.user_options = {"tenant": "team-s", "profile": "a100-2"}
            spawners.append(s)
        first, second = spawners
        await asyncio.wait_for(first.start(), 90)
        try:
            pod = cluster.kubectl_json("get", "pod", "-n", "aistack-servers", first.pod_name)
            assert pod["status"]["phase"] == "Running"
            assert pod["spec"]["nodeName"] == first.allocation["assignment"]["node"]
            assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
            with pytest.raises(AllocationRefused) as refused:
                await second.start()
            assert refused.value.status_code == 403, refused.value.jupyterhub_message
            pods = cluster.kubectl_json("get", "pods", "-n", "aistack-servers", "-l",
                                        f"hub.jupyter.org/username={second.user.name}")["items"]
            assert pods == []
        finally:
            await first.stop(now=True)
        assert first.allocation is None  # released at the service


async def test_reconcile_deletes_a_job_the_database_does_not_know(cluster, tmp_path, instance):
    """A cancel whose delete was lost: the database says final, the Kubernetes Job still runs. The
    controller's periodic reconcile (Executor.reconcile) deletes it; a live job's Job stays."""
    from job_runner.controller import Controller
    from job_runner.db import Job

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance, extra_pod_annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "300s"})
    queue = Controller(db, deployment, ex, reconcile_interval_s=0.001)  # every pass
    orphan, live = _submit(db, deployment), _submit(db, deployment)
    try:
        await _run_until(queue, db, orphan, ("running",))
        await _run_until(queue, db, live, ("running",))
        with db.session() as s:  # the state a lost delete leaves behind
            s.get(Job, orphan).state = "cancelled"
        await queue.tick()
        deadline = time.monotonic() + 30
        while _k8s_jobs(cluster, orphan, instance) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert _k8s_jobs(cluster, orphan, instance) == []
        assert len(_k8s_jobs(cluster, live, instance)) == 1
    finally:
        queue.stop()
        await ex.close()


async def test_a_cordoned_node_gets_no_new_work_until_it_is_uncordoned(cluster, tmp_path, instance):
    """Closes (issue 11, a node lost): the core kept placing work on a node its cluster said could take none,
    and job pods are pinned to the core's node. Now the controller asks the executor which Nodes cannot take
    work (here: cordoned, as kubectl drain does; not Ready and the lifecycle taints are the same check) and the
    core places nothing there: the T4 job waits queued while the only T4 node is cordoned, and runs there once
    it is uncordoned."""
    from job_runner.controller import Controller

    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance, extra_pod_annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "300s"})
    queue = Controller(db, deployment, ex, node_health_interval_s=0.001)  # every pass
    t4 = "kwok-t4-shared-0"
    try:
        assert t4 not in await ex.unavailable_nodes()
        cluster.kubectl("cordon", t4)
        assert t4 in await ex.unavailable_nodes()
        job_id = _submit(db, deployment, profile="t4-quarter")
        for _ in range(3):
            await queue.tick()
        assert _job_row(db, job_id).state == "queued"
        assert _k8s_jobs(cluster, job_id, instance) == []
        cluster.kubectl("uncordon", t4)
        row = await _run_until(queue, db, job_id, ("running",))
        assert row.handle and _k8s_jobs(cluster, job_id, instance)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the Job's pod, once the kube-scheduler has bound it
            pods = cluster.kubectl_json("get", "pods", "-A", "-l",  # this test's pods: ids repeat across tests
                                       f"{JOB_ID_LABEL}={job_id},{INSTANCE_LABEL}={instance}")["items"]
            if pods and all(p["spec"].get("nodeName") for p in pods):
                break
            await asyncio.sleep(0.3)
        assert [p["spec"].get("nodeName") for p in pods] == [t4]
    finally:
        cluster.kubectl("uncordon", t4, check=False)
        queue.stop()
        await ex.close()


def test_which_nodes_cannot_take_work():
    """The check on a Node's API object: not Ready (Unknown: its kubelet silent past the grace period),
    cordoned, or one of the node lifecycle's taints; a GPU node's own NoSchedule taint is not one."""
    from job_runner.executors.k8s_nodes import why_unavailable

    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    gpu = {**ready, "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}
    assert why_unavailable(ready) is None and why_unavailable(gpu) is None
    assert why_unavailable({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}) == "Ready is Unknown"
    assert why_unavailable({**ready, "spec": {"unschedulable": True}}) == "cordoned"
    lost = {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]}}
    assert why_unavailable(lost) == "tainted node.kubernetes.io/out-of-service"
