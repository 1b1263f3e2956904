"""Tenant storage on Kubernetes, as manifests: a job's pod mounts its tenant's claim read-write and each
published dataset's claim read-only at the embedded paths, runs the environment's image, and the claims are
ReadWriteMany / ReadOnlyMany unless configured otherwise (storageClass, accessModes traits). A real pod
mounting these claims is not run here (docs/storage.md says why)."""
from __future__ import annotations

from job_runner.binding.storage_kube import KubeStorage, dataset_claim, pod_volumes, tenant_claim
from job_runner.executors.base import JobSpec
from job_runner.executors.kubernetes import KubernetesExecutor


def _job(**kw) -> JobSpec:
    return JobSpec(**{**dict(id=7, name="train", user="alice", tenant="team-a", profile="cpu", attempt=1,
                             notebook="{}", request={"kind": "cpu", "cpu_milli": 100}, image="example/base:1",
                             kernel_name="aistack-torch"), **kw})


def test_job_pod_mounts_tenant_claim_and_datasets_read_only_and_uses_the_environment_image():
    ex = KubernetesExecutor(service_url="http://svc/services/aistack/api/", job_token_secret="k")

    def volumes(tenant):
        vols, mounts = pod_volumes(tenant, ["imagenet", "corpus"])
        return {"volumes": vols, "volumeMounts": mounts, "env": {"AISTACK_TENANT_DIR": f"/shared/{tenant}"}}

    ex.storage_volumes = volumes
    ex.environment_image = lambda tenant, kernel: "example/torch:2.4" if kernel == "aistack-torch" else None
    pod = ex.job_manifest(_job(), None)["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]}
    c = pod["containers"][0]
    mounts = {m["mountPath"]: (claims[m["name"]]["claimName"], m["readOnly"]) for m in c["volumeMounts"]}
    assert mounts == {"/shared/team-a": ("aistack-storage-team-a", False),
                      "/datasets/corpus": ("aistack-dataset-corpus", True),
                      "/datasets/imagenet": ("aistack-dataset-imagenet", True)}
    assert all(claims[n]["readOnly"] for n in claims if n.startswith("aistack-ds-"))
    assert {"name": "AISTACK_TENANT_DIR", "value": "/shared/team-a"} in c["env"]
    assert c["image"] == "example/torch:2.4"
    # without an environment image the profile's image stays
    assert ex.job_manifest(_job(kernel_name=None), None)["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "example/base:1"


def test_claims_are_rwx_and_rox_by_default_and_follow_the_traits():
    k = KubeStorage()
    pvc = k.tenant_pvc("team-a", "aistack-team-a", 250)
    assert pvc["metadata"] == {"name": tenant_claim("team-a"), "namespace": "aistack-team-a",
                               "labels": {"app.kubernetes.io/managed-by": "aistack", "aistack.io/storage": "tenant",
                                          "aistack.io/tenant": "team-a"}}
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "250Gi"}}}
    k = KubeStorage(storage_class="local-path", access_modes=["ReadWriteOnce"])
    pvc = k.tenant_pvc("team-a", "ns")
    assert pvc["spec"]["storageClassName"] == "local-path" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    ds = k.dataset_pvc("imagenet", "ns", 1500, volume_name="pv-imagenet")
    assert ds["metadata"]["name"] == dataset_claim("imagenet")
    assert ds["spec"]["accessModes"] == ["ReadOnlyMany"] and ds["spec"]["volumeName"] == "pv-imagenet"
    assert pod_volumes("t", [], read_only=True)[1][0]["readOnly"] is True
