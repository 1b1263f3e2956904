"""The PersistentVolumeClaims a tenant's job pods mount (tenant storage, issue 15 C), created in the tenant's
namespace before its Job (KubernetesExecutor.start) -- the hook ``storage_claims(tenant, namespace)`` the
service sets (``aistack_hub.services.storage.install``, only with ``KubeStorage.mount_claims``) returns the
manifests (``job_runner.binding.storage_kube``: the tenant's claim, one read-only claim per dataset
published to it).

Idempotent: 409 (the claim exists: made by an earlier Job, the hub for a server, or an admin) is success and
an existing claim is never changed (its size and class are the provisioner's once bound). Each claim is
asked for once per executor (a set of created names), so a tenant's Jobs cost no extra API calls after its
first one. The tenant's checkpoint claim (``KubernetesExecutor.checkpoint_claim``, restart from
checkpoint) is made the same way. A claim that can neither be created nor read (no RBAC) fails the start with what to do: a pod
naming a missing claim would only wait Pending until ``pending_timeout_s``.
"""
from __future__ import annotations

import asyncio

from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import Configurable


class CheckpointClaims(Configurable):
    """The checkpoint folders of KubernetesExecutor's job pods (restart from checkpoint): its traits, configured
    as ``KubernetesExecutor.<trait>`` (here to keep the executor's module short)."""

    checkpoint_claim = Unicode(
        "",
        config=True,
        help="""The PersistentVolumeClaim in each tenant's namespace that holds its jobs' checkpoint folders
        ('{tenant}' is replaced by the tenant's DNS-safe name), e.g. 'aistack-checkpoints'. A job pod mounts
        its job's folder of it (subPath '<instance>/jobs/<job id>') at checkpoint_mount_path, set as
        AISTACK_CHECKPOINT_DIR: the same folder on every attempt, so an attempt retried after its pod or
        node was lost resumes from what the lost one saved. It must outlive pod and node, and be mountable
        on another node at once: ReadWriteMany (NFS, CephFS, EFS, Azure Files, ...); a ReadWriteOnce
        volume of a lost node stays attached there for minutes. Its root must be writable by run_as_user or
        run_as_group (fsGroup makes it so on volumes that support it). Empty: no checkpoint folder and no
        AISTACK_CHECKPOINT_DIR in job pods (a folder inside the pod would be lost with it).""",
    )
    create_checkpoint_claims = Bool(True, config=True, help="""Create checkpoint_claim in a tenant's namespace
        before its first Job when it is missing (never changing an existing one); off: an admin creates it.""")
    checkpoint_storage_class = Unicode("", config=True,
        help="storageClassName of the checkpoint claims the executor creates ('' = the cluster's default class).")
    checkpoint_access_modes = List(Unicode(), ["ReadWriteMany"], config=True,
        help="accessModes of the checkpoint claims the executor creates.")
    checkpoint_size_gib = Float(50.0, config=True, help="Requested size (GiB) of a checkpoint claim it creates.")
    checkpoint_mount_path = Unicode("/aistack/checkpoints", config=True,
        help="Where a job pod sees its checkpoint folder (AISTACK_CHECKPOINT_DIR), as in the local sandbox.")
    termination_grace_period_s = Int(30, config=True, help="""terminationGracePeriodSeconds of job pods: how
        long a deleted or evicted pod may take to stop after SIGTERM (job_runner.pod passes it to the
        notebook and reports) before SIGKILL. A lost pod's job is retried only once the pod has stopped (never
        two attempts at once), so this bounds the loss-to-restart time of a pod that ignores SIGTERM.""")


async def ensure_claims(ex, tenant: str, namespace: str) -> list[str]:
    """Create the claims ``ex.storage_claims`` names for ``tenant`` in ``namespace``; returns the names it
    asked the API server for (empty when none is needed or all were made before). The tenant's checkpoint
    claim first (``ensure_checkpoint_claim``), then those of the hook."""
    await ensure_checkpoint_claim(ex, tenant, namespace)
    hook = getattr(ex, "storage_claims", None)
    if hook is None:
        return []
    seen = ex.__dict__.setdefault("_claims_seen", set())
    claims = [c for c in await asyncio.to_thread(hook, tenant, namespace)
              if (namespace, c["metadata"]["name"]) not in seen]
    if not claims:
        return []
    for pvc in claims:
        await create_claim(ex, namespace, pvc, "turn KubeStorage.mount_claims off")
    return [c["metadata"]["name"] for c in claims]


async def ensure_checkpoint_claim(ex, tenant: str, namespace: str) -> str | None:
    """The tenant's checkpoint claim (``KubernetesExecutor.checkpoint_claim``), created when missing if
    ``create_checkpoint_claims``; returns its name when this call asked the API server for it."""
    from .k8s_manifest import checkpoint_pvc

    if not getattr(ex, "checkpoint_claim", "") or not ex.create_checkpoint_claims:
        return None
    pvc = checkpoint_pvc(ex, tenant, namespace)
    if (namespace, pvc["metadata"]["name"]) in ex.__dict__.setdefault("_claims_seen", set()):
        return None
    await create_claim(ex, namespace, pvc, "create the claim yourself and turn "
                                           "KubernetesExecutor.create_checkpoint_claims off")
    return pvc["metadata"]["name"]


async def create_claim(ex, namespace: str, pvc: dict, otherwise: str) -> None:
    """Create one claim; 409 (it exists) is success and it is never changed; a claim that can be neither
    created nor read fails with what to do (``otherwise``: the knob that avoids the create)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    _, core = await ex._apis()
    name = pvc["metadata"]["name"]
    pvc = {**pvc, "metadata": {**pvc["metadata"], "namespace": namespace}}
    try:
        await core.create_namespaced_persistent_volume_claim(namespace, pvc, _request_timeout=ex.request_timeout_s)
    except ApiException as e:
        if e.status != 409:
            try:  # made by someone else (the hub, an admin) while we may only read
                await core.read_namespaced_persistent_volume_claim(name, namespace,
                                                                  _request_timeout=ex.request_timeout_s)
            except ApiException:
                raise RuntimeError(
                    f"cannot create the claim {namespace}/{name} ({e.status} {e.reason}): give the aistack "
                    f"service create/get on persistentvolumeclaims there, or {otherwise}") from e
    ex.__dict__.setdefault("_claims_seen", set()).add((namespace, name))
