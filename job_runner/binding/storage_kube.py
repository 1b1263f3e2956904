"""Tenant storage on Kubernetes: a PersistentVolumeClaim per tenant in its namespace (ReadWriteMany where the
cluster's storage class offers it) and a read-only claim per dataset published to the tenant, mounted into
its servers (KubeGPUSpawner) and jobs (KubernetesExecutor) at the same paths as in the embedded sandbox
(``TenantStorage.mount_path`` / ``dataset_mount_path``). docs/storage.md.

The manifests are plain dicts; ``pod_volumes`` gives the ``volumes`` and ``volumeMounts`` a pod spec adds.
This module imports nothing of ours (layer 1).
"""
from __future__ import annotations

import re

from traitlets import Bool, Float, List, Unicode
from traitlets.config import Configurable

LABEL = "aistack.io/storage"


def _dns(name: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return out[:63].rstrip("-") or "x"


def tenant_claim(tenant: str) -> str:
    return _dns(f"aistack-storage-{tenant}")


def dataset_claim(name: str) -> str:
    return _dns(f"aistack-dataset-{name}")


class KubeStorage(Configurable):
    """The claims' storage class and access modes (the cluster decides what it offers)."""

    mount_claims = Bool(False, help="""Create and mount the tenants' claims: before a tenant's Job the service
        creates its claim and its datasets' claims in the tenant's namespace (KubernetesExecutor,
        executors/k8s_claims.py) and mounts them into the job pod; before a server KubeGPUSpawner gets them
        from GET storage/volumes, creates them in the server's namespace and mounts them. Off by default: a
        claim binds only where a provisioner serves its storage class (or a PersistentVolume is made for it);
        on a cluster without one (kind/kwok test clusters, a bare kubelet node) every pod mounting it would
        wait Pending. Turn it on where ``storage_class`` (RWX, e.g. NFS/CephFS/EFS) is provisioned.""").tag(config=True)
    storage_class = Unicode("", help="storageClassName of the tenants' claims ('' = the cluster's default "
                                     "class).").tag(config=True)
    access_modes = List(Unicode(), ["ReadWriteMany"], help="""accessModes of a tenant's claim. ReadWriteMany
        lets servers and jobs on different nodes share it (NFS, CephFS, EFS, Azure Files, ...); on a cluster
        whose class offers only ReadWriteOnce (local-path, hostPath), set ["ReadWriteOnce"]: the pods then
        share it only on one node.""").tag(config=True)
    dataset_access_modes = List(Unicode(), ["ReadOnlyMany"], help="accessModes of the datasets' claims."
                                ).tag(config=True)
    dataset_storage_class = Unicode("", help="storageClassName of the datasets' claims ('' = storage_class)."
                                    ).tag(config=True)
    default_size_gib = Float(100.0, help="Requested size of a tenant's claim without its own quota (GiB)."
                             ).tag(config=True)
    scan_interval_s = Float(900.0, help="""With mount_claims: every this many seconds the service (its leader)
        measures each tenant's claim with a short scan Job in the tenant's namespace (the claim mounted
        read-only, the same scan as the embedded deployment's; executors/k8s_storage_scan.py) and shows it
        against the tenant's storage quota. 0: never (usage then shows as not measured).""").tag(config=True)
    scan_timeout_s = Float(300.0, help="Longest a claim's scan Job may run (its activeDeadlineSeconds)."
                           ).tag(config=True)

    def tenant_pvc(self, tenant: str, namespace: str, size_gib: float | None = None) -> dict:
        return pvc_manifest(tenant_claim(tenant), namespace, size_gib or self.default_size_gib,
                            self.storage_class, list(self.access_modes), {LABEL: "tenant", "aistack.io/tenant": _dns(tenant)})

    def dataset_pvc(self, name: str, namespace: str, size_gib: float, volume_name: str = "") -> dict:
        """The dataset's claim in one tenant's namespace (claims are namespaced: one per namespace, each
        bound to the dataset's volume, e.g. an NFS or CephFS export; ``volume_name`` pins that volume)."""
        pvc = pvc_manifest(dataset_claim(name), namespace, size_gib, self.dataset_storage_class or self.storage_class,
                           list(self.dataset_access_modes), {LABEL: "dataset", "aistack.io/dataset": _dns(name)})
        if volume_name:
            pvc["spec"]["volumeName"] = volume_name
        return pvc


def pvc_manifest(name: str, namespace: str, size_gib: float, storage_class: str, access_modes: list,
                 labels: dict | None = None) -> dict:
    spec = {"accessModes": list(access_modes),
            "resources": {"requests": {"storage": f"{max(1, int(round(size_gib)))}Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "aistack", **(labels or {})}},
            "spec": spec}


def pod_volumes(tenant: str, datasets: list[str], mount_path: str = "/shared/{tenant}",
                dataset_mount_path: str = "/datasets/{name}", read_only: bool = False) -> tuple[list, list]:
    """``(volumes, volumeMounts)`` of a pod of ``tenant``: its claim read-write (read-only when over quota
    and ``over_quota`` says so) and each dataset's claim read-only."""
    vols = [{"name": "aistack-tenant", "persistentVolumeClaim": {"claimName": tenant_claim(tenant)}}]
    mounts = [{"name": "aistack-tenant", "mountPath": mount_path.format(tenant=tenant), "readOnly": bool(read_only)}]
    for i, name in enumerate(sorted(set(datasets))):
        vname = f"aistack-ds-{i}"
        vols.append({"name": vname, "persistentVolumeClaim": {"claimName": dataset_claim(name), "readOnly": True}})
        mounts.append({"name": vname, "mountPath": dataset_mount_path.format(name=name), "readOnly": True})
    return vols, mounts


def add_to_pod(pod_spec: dict, container: dict, volumes: list, mounts: list) -> None:
    """Append the volumes to a pod spec and the mounts to one of its containers (in place)."""
    if volumes:
        pod_spec["volumes"] = [*pod_spec.get("volumes", []), *volumes]
        container["volumeMounts"] = [*container.get("volumeMounts", []), *mounts]
