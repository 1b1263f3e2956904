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
        "metadata": {"name": name, "namespace": ex.namespace_of(job), "labels": labels,
                     "annotations": dict(kslice.annotations)},
        "spec": spec,
    }


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
