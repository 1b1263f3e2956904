"""Tenant storage on a real Kubernetes control plane (tests/k8s: kube-apiserver, controller-manager with its
PersistentVolume binder, scheduler; kwok plays the kubelets, so no volume is really attached -- containers
are simulated). The service's hooks (``storage_claims``/``storage_volumes``, what
``aistack_hub.services.storage.install`` sets with ``KubeStorage.mount_claims`` on) make the executor create
the tenant's claim and a dataset's read-only claim in the tenant's namespace before the Job; a second
executor (a restart) finds them (409) and changes nothing. There is no provisioner on this cluster: a
PersistentVolume is made for each claim (static provisioning), the binder binds it, and only then is the
pod scheduled and run -- the reason ``mount_claims`` stays off where no provisioner serves the class.
"""
from __future__ import annotations

import asyncio

from job_runner.binding.storage_kube import KubeStorage, pod_volumes
from tests.k8s.fixture import k8s_control_plane, kubeconfig  # noqa: F401
from tests.k8s_workloads.test_k8s_workloads_cluster import (_db, _deployment, _executor, _k8s_jobs, _run_until,
                                                            _submit, cluster, instance)  # noqa: F401

import pytest

pytestmark = pytest.mark.k8s
NS = "aistack-team-a"


def _pv(name, claim, modes):
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": modes, "storageClassName": "aistack-test",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{name}"},
                     "claimRef": {"namespace": NS, "name": claim}}}


def _delete(cluster, ns, pvcs, pvs):
    """Claims and volumes gone (this control plane runs no pvc/pv-protection controller: their finalizers
    are taken off, else they would stay Terminating for the rest of the session)."""
    for kind, names, where in (("pvc", pvcs, ["-n", ns]), ("pv", pvs, [])):
        for name in names:
            cluster.kubectl("delete", kind, *where, name, "--wait=false", check=False)
            cluster.kubectl("patch", kind, *where, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)


def _hooks(ex, kube: KubeStorage):
    ex.storage_claims = lambda tenant, ns: [kube.tenant_pvc(tenant, ns, 2),
                                            kube.dataset_pvc("imagenet", ns, 1)]

    def volumes(tenant):
        vols, mounts = pod_volumes(tenant, ["imagenet"])
        return {"volumes": vols, "volumeMounts": mounts, "env": {"AISTACK_TENANT_DIR": f"/shared/{tenant}"}}

    ex.storage_volumes = volumes


async def test_job_creates_its_tenants_claims_then_runs_once_they_are_bound(cluster, tmp_path, instance):
    from job_runner.controller import Controller

    kube = KubeStorage(storage_class="aistack-test")
    deployment = _deployment(cluster)
    db = _db(tmp_path, deployment)
    ex = _executor(cluster, instance)
    _hooks(ex, kube)
    tag = instance  # PVs are cluster-wide: one pair per test run
    for pv in (_pv(f"{tag}-tenant", "aistack-storage-team-a", ["ReadWriteMany"]),
               _pv(f"{tag}-imagenet", "aistack-dataset-imagenet", ["ReadOnlyMany"])):
        cluster.apply(pv)
    queue = Controller(db, deployment, ex)
    job_id = _submit(db, deployment)
    try:
        await _run_until(queue, db, job_id, ("running",))
        pvcs = {p["metadata"]["name"]: p for p in cluster.kubectl_json("get", "pvc", "-n", NS)["items"]}
        assert pvcs["aistack-storage-team-a"]["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvcs["aistack-storage-team-a"]["spec"]["storageClassName"] == "aistack-test"
        assert pvcs["aistack-storage-team-a"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert pvcs["aistack-dataset-imagenet"]["spec"]["accessModes"] == ["ReadOnlyMany"]
        kjob = _k8s_jobs(cluster, job_id, instance)[0]
        spec = kjob["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m.get("readOnly", False) for m in spec["containers"][0]["volumeMounts"]}
        assert mounts == {"/shared/team-a": False, "/datasets/imagenet": True}
        row = await _run_until(queue, db, job_id, ("succeeded", "failed"), timeout=90)
        assert row.state == "succeeded", row.failure  # scheduled only with its claims bound
        bound = {p["metadata"]["name"]: p["status"].get("phase")
                 for p in cluster.kubectl_json("get", "pvc", "-n", NS)["items"]}
        assert bound["aistack-storage-team-a"] == "Bound" and bound["aistack-dataset-imagenet"] == "Bound"
        # a restarted service (fresh executor) asks again: 409, nothing new, nothing changed
        def versions():
            return {p["metadata"]["name"]: p["metadata"]["resourceVersion"]
                    for p in cluster.kubectl_json("get", "pvc", "-n", NS)["items"]}

        before = versions()
        ex2 = _executor(cluster, instance)
        _hooks(ex2, kube)
        from job_runner.executors.k8s_claims import ensure_claims

        asked = await ensure_claims(ex2, "team-a", NS)
        assert asked == ["aistack-storage-team-a", "aistack-dataset-imagenet"]
        assert await ensure_claims(ex2, "team-a", NS) == []  # remembered: no API call for the next Job
        assert versions() == before
        await ex2.close()
    finally:
        queue.stop()
        await ex.close()
        _delete(cluster, NS, ["aistack-storage-team-a", "aistack-dataset-imagenet"], [f"{tag}-tenant", f"{tag}-imagenet"])


async def test_server_gets_its_tenants_claim_from_the_real_service(cluster, tmp_path, instance):
    """KubeGPUSpawner -> the real service's GET storage/volumes (KubeStorage.mount_claims on) -> the claim
    created in the server's namespace, mounted at /shared/<tenant>, AISTACK_TENANT_DIR set; the pod runs
    once the claim is bound (a PersistentVolume made for it: no provisioner here)."""
    from kubespawner import KubeSpawner

    from job_runner.binding.kube import SliceRenderer
    from spawner.kube import KubeGPUSpawner
    from tests.k8s_workloads.inprocess import PROFILES
    from tests.k8s_workloads.service_proc import HUB_TOKEN, aistack_service
    from tests.k8s_workloads.test_k8s_workloads_cluster import _nodes, _spawner

    ns = "aistack-servers"
    cluster.create_namespace(ns)
    pv = _pv(f"{instance}-server", "aistack-storage-team-s", ["ReadWriteMany"])
    pv["spec"]["capacity"]["storage"] = "200Gi"  # the claim asks for the tenant's storage quota (100 GiB default)
    pv["spec"]["claimRef"]["namespace"] = ns
    cluster.apply(pv)
    deployment = {"tenants": [{"name": "team-s", "quotas": {"any": {"gpu_milli": 2000}}}], "profiles": PROFILES,
                  "inventory": SliceRenderer().inventory_config(_nodes(cluster))}
    try:
        with aistack_service(tmp_path, deployment, "--KubeStorage.mount_claims=True",
                             "--KubeStorage.storage_class=aistack-test") as svc:
            s = _spawner(cluster, None, "whole", tenant="team-s", cls=KubeGPUSpawner)
            s.aistack_api_url, s.aistack_token, s.wait_for_gpu = svc["api"], HUB_TOKEN, False
            s.user_options = {"tenant": "team-s", "profile": "a100-2"}
            await asyncio.wait_for(s.start(), 120)
            try:
                pvc = cluster.kubectl_json("get", "pvc", "-n", ns, "aistack-storage-team-s")
                assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
                assert pvc["spec"]["storageClassName"] == "aistack-test" and pvc["status"]["phase"] == "Bound"
                pod = cluster.kubectl_json("get", "pod", "-n", ns, s.pod_name)
                assert pod["status"]["phase"] == "Running"
                claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                          for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
                c = pod["spec"]["containers"][0]
                mounted = {m["mountPath"]: claims.get(m["name"]) for m in c["volumeMounts"]}
                assert mounted["/shared/team-s"] == "aistack-storage-team-s"
                assert {"name": "AISTACK_TENANT_DIR", "value": "/shared/team-s"} in c["env"]
            finally:
                await s.stop(now=True)
    finally:
        await KubeSpawner._stop_all_reflectors()
        _delete(cluster, ns, ["aistack-storage-team-s"], [f"{instance}-server"])
