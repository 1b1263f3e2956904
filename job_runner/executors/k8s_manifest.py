"""The batch/v1 Job manifest of one attempt of a notebook job (KubernetesExecutor), and its labels."""
from __future__ import annotations

import base64
import math

from job_runner.binding.kube import LABEL_PREFIX, dns_label, label_value
from job_runner.binding.storage_kube import add_to_pod  # storage (issue 15 C)
from job_runner.scheduling import Assignment, SliceRequest

from .base import JobSpec

JOB_ID_LABEL = LABEL_PREFIX + "job-id"
ATTEMPT_LABEL = LABEL_PREFIX + "attempt"
USER_LABEL = LABEL_PREFIX + "user"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = LABEL_PREFIX + "instance"
CONTAINER_NAME = "notebook"


def job_manifest(ex, job: JobSpec, assignment: dict | None) -> dict:
    """The batch/v1 Job of one attempt of ``job`` for executor ``ex`` (its traits: image, security,
    volumes, labels), a plain dict. The slice is rendered by ``ex.renderer`` (the same rendering as the
    servers of KubeGPUSpawner); Kubernetes' device plugin picks the devices and sets the sharing limits,
    so no local binding (CUDA_VISIBLE_DEVICES, MPS limits) is ever computed for a pod."""

    request = SliceRequest.from_dict(job.request or {"kind": "cpu"})
    assign = Assignment.from_dict(assignment) if assignment else None
    kslice = ex.renderer.render(request, tenant=job.tenant, profile=job.profile, workload="job",
                                  assignment=assign)
    name = ex.job_name(job.id, job.attempt)
    labels = {
        MANAGED_BY_LABEL: "aistack",
        INSTANCE_LABEL: label_value(ex.instance),
        JOB_ID_LABEL: str(job.id),
        ATTEMPT_LABEL: str(job.attempt),
        USER_LABEL: label_value(job.user),
        **kslice.labels,
    }
    queue_label = {k: v for k, v in labels.items() if k.startswith("kueue.x-k8s.io/")}
    pod_labels = {k: v for k, v in labels.items() if k not in queue_label}
    pod_labels.update(ex.extra_pod_labels)

    env = {**ex.extra_env, **kslice.env,
           "AISTACK_SERVICE_URL": ex.service_url, "AISTACK_JOB_ID": str(job.id),
           "AISTACK_JOB_ATTEMPT": str(job.attempt), "AISTACK_USER": job.user}
    if ex.checkpoint_claim:  # only where a folder that outlives the pod exists (checkpoint_volume)
        env["AISTACK_CHECKPOINT_DIR"] = ex.checkpoint_mount_path
    env_list = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
    env_list.append({"name": "AISTACK_JOB_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}})

    container = {
        "name": CONTAINER_NAME,
        "image": job.image or ex.image,
        "imagePullPolicy": ex.image_pull_policy,
        "command": list(ex.command),
        "env": env_list,
        "resources": kslice.container_resources(),
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec = {
        "restartPolicy": "Never",
        # how long a lost (deleted, evicted) pod may take to stop before SIGKILL: the retry waits for it
        "terminationGracePeriodSeconds": ex.termination_grace_period_s,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": ex.run_as_user,
            "runAsGroup": ex.run_as_group,
            "fsGroup": ex.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        **kslice.pod_spec_fields(),
    }
    if ex.node_selector:
        pod_spec["nodeSelector"] = {**ex.node_selector, **pod_spec.get("nodeSelector", {})}
    if ex.tolerations:
        pod_spec["tolerations"] = [*pod_spec.get("tolerations", []), *ex.tolerations]
    if ex.home_volume_claim_template:
        claim = ex.home_volume_claim_template.replace("{username}", dns_label(job.user))
        pod_spec["volumes"] = [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]
        container["volumeMounts"] = [{"name": "home", "mountPath": ex.home_mount_path}]
        container["workingDir"] = ex.home_mount_path
    add_to_pod(pod_spec, container, *checkpoint_volume(ex, job))
    # --- storage + environments (issue 15 C): the tenant's claim, its datasets read-only, the environment's
    # image (hooks the service sets: aistack_hub.services.storage.install; a plain executor has none)
    storage = getattr(ex, "storage_volumes", None)
    if storage is not None:
        got = storage(job.tenant)
        add_to_pod(pod_spec, container, got["volumes"], got["volumeMounts"])
        env_list.extend({"name": k, "value": str(v)} for k, v in sorted((got.get("env") or {}).items()))
    image_of = getattr(ex, "environment_image", None)
    image = image_of(job.tenant, job.kernel_name) if image_of is not None else None
    if image:
        container["image"] = image
    # --- end storage + environments ---
    spec = {
        "backoffLimit": 0,  # each retry is a new attempt decided by the service's retry policy
        "ttlSecondsAfterFinished": ex.ttl_seconds_after_finished,
        "template": {"metadata": {"labels": pod_labels,
                                  "annotations": {**kslice.annotations, **ex.extra_pod_annotations}},
                     "spec": pod_spec},
    }
    if job.timeout_s:
        spec["activeDeadlineSeconds"] = int(math.ceil(job.timeout_s)) + ex.deadline_grace_s
    if queue_label:
        spec["suspend"] = True  # Kueue admits (unsuspends) it
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ex.tenant_namespace(job.tenant, job.namespace), "labels": labels,
                     "annotations": dict(kslice.annotations)},
        "spec": spec,
    }


CHECKPOINT_VOLUME = "aistack-checkpoints"


def checkpoint_claim_name(ex, tenant: str) -> str:
    """The tenant's checkpoint claim (``checkpoint_claim`` with '{tenant}' replaced), '' when none is set."""
    return dns_label(ex.checkpoint_claim.replace("{tenant}", dns_label(tenant))) if ex.checkpoint_claim else ""


def checkpoint_subpath(ex, job_id) -> str:
    """The job's folder in its tenant's checkpoint claim: one per job (not per attempt), so every attempt
    finds what the previous ones saved; under the instance, so two deployments sharing a claim never mix."""
    return f"{dns_label(ex.instance, 40)}/jobs/{job_id}"


def checkpoint_volume(ex, job: JobSpec) -> tuple[list, list]:
    """``(volumes, volumeMounts)`` of the checkpoint folder (AISTACK_CHECKPOINT_DIR): the job's subPath of
    the tenant's claim, which outlives the pod and its node. Without a claim, none: a folder in the pod
    would go with it, and a notebook must not be told it can resume from one (it sees no
    AISTACK_CHECKPOINT_DIR, as before)."""
    claim = checkpoint_claim_name(ex, job.tenant)
    if not claim:
        return [], []
    # The kubelet creates the subPath folder (with the mode of the claim's root) on the first attempt.
    return ([{"name": CHECKPOINT_VOLUME, "persistentVolumeClaim": {"claimName": claim}}],
            [{"name": CHECKPOINT_VOLUME, "mountPath": ex.checkpoint_mount_path,
              "subPath": checkpoint_subpath(ex, job.id)}])


def checkpoint_pvc(ex, tenant: str, namespace: str) -> dict:
    """The manifest of a tenant's checkpoint claim (created when missing, ``create_checkpoint_claims``)."""
    spec = {"accessModes": list(ex.checkpoint_access_modes),
            "resources": {"requests": {"storage": f"{max(1, int(round(ex.checkpoint_size_gib)))}Gi"}}}
    if ex.checkpoint_storage_class:
        spec["storageClassName"] = ex.checkpoint_storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": checkpoint_claim_name(ex, tenant), "namespace": namespace,
                         "labels": {MANAGED_BY_LABEL: "aistack", INSTANCE_LABEL: label_value(ex.instance),
                                    LABEL_PREFIX + "storage": "checkpoints"}},
            "spec": spec}


def token_secret_manifest(ex, handle: dict, token: str) -> dict:
    """The per-job token as a Secret owned by the attempt's Job (garbage-collected with it); the pod
    reads it as AISTACK_JOB_TOKEN (an env var, not a mounted service-account token)."""
    return {
        "metadata": {
            "name": handle["name"],
            "namespace": handle["namespace"],
            "labels": {MANAGED_BY_LABEL: "aistack", INSTANCE_LABEL: label_value(ex.instance),
                       JOB_ID_LABEL: str(handle["job_id"])},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": handle["name"],
                                 "uid": handle["uid"], "blockOwnerDeletion": False}],
        },
        "type": "Opaque",
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }
