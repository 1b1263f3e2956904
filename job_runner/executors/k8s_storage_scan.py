"""How much a tenant's storage claim holds, on Kubernetes (issue 15 C: usage counted in both deployments).

The service cannot mount a claim of another namespace, so it measures one with a short ``batch/v1`` Job in
the tenant's namespace: its pod mounts the claim **read-only** at ``/data`` and runs
``python -m job_runner.binding.storage_scan /data`` (the embedded deployment's own folder scan: allocated
bytes like ``du``, hard links once) from the job image, as the job pods' non-root user, without a
service-account token, on the nodes job pods may use; the result comes back in the container's termination
message (read from the pod's status: no log access, no network path to the service needed). The Job is
deleted once read. A claim that is missing or not Bound is not scanned (its pod would wait Pending): the
answer says so.

Scan Jobs carry ``app.kubernetes.io/managed-by=aistack`` and ``aistack.io/storage-scan``, never the
executor's instance label, so nothing that lists the instance's notebook Jobs (polls, orphan cleanup) sees
them."""
from __future__ import annotations

import asyncio
import json
import time

from job_runner.binding.kube import LABEL_PREFIX, dns_label, label_value

from .k8s_manifest import MANAGED_BY_LABEL

SCAN_LABEL = LABEL_PREFIX + "storage-scan"
SCAN_OF_LABEL = LABEL_PREFIX + "storage-scan-of"  # the executor's instance, under a key of its own
MOUNT = "/data"
UNSCHEDULABLE_S = 60.0  # a scan pod unschedulable this long fails the scan with the scheduler's reason


class ScanError(RuntimeError):
    """The claim could not be measured (the message says why, in the admin's terms)."""


def scan_manifest(ex, tenant: str, namespace: str, claim: str, name: str, deadline_s: int) -> dict:
    """The scan Job (a plain dict) for executor ``ex`` (image, user, node selector, tolerations)."""
    labels = {MANAGED_BY_LABEL: "aistack", SCAN_LABEL: label_value(tenant), SCAN_OF_LABEL: label_value(ex.instance)}
    python = ex.command[0] if ex.command and "python" in ex.command[0] else "python"
    container = {
        "name": "scan",
        "image": ex.image,
        "imagePullPolicy": ex.image_pull_policy,
        "command": [python, "-m", "job_runner.binding.storage_scan", MOUNT],
        "volumeMounts": [{"name": "claim", "mountPath": MOUNT, "readOnly": True}],
        "resources": {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "terminationMessagePolicy": "File",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # no fsGroup: a read-only look must not make the kubelet change the volume's ownership; the job
        # pods' group is a supplementary group instead (what they write is theirs)
        "securityContext": {"runAsNonRoot": True, "runAsUser": ex.run_as_user, "runAsGroup": ex.run_as_group,
                            "supplementalGroups": [ex.run_as_group], "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
    }
    if ex.node_selector:
        pod_spec["nodeSelector"] = dict(ex.node_selector)
    if ex.tolerations:
        pod_spec["tolerations"] = list(ex.tolerations)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": int(deadline_s), "ttlSecondsAfterFinished": 300,
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}


def _terminated(pod):
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        t = cs.state.terminated if cs.state else None
        if t is not None:
            return t
    return None


async def scan_claim(ex, tenant: str, namespace: str, claim: str, timeout_s: float = 300.0,
                     poll_s: float = 1.0) -> dict:
    """``scan_usage``'s answer for ``claim`` in ``namespace``, measured by a scan Job; raises ScanError."""
    from kubernetes_asyncio.client.exceptions import ApiException

    batch, core = await ex._apis()
    t = ex.request_timeout_s
    try:
        pvc = await core.read_namespaced_persistent_volume_claim(claim, namespace, _request_timeout=t)
    except ApiException as e:
        if e.status == 404:
            raise ScanError(f"no claim {claim!r} in namespace {namespace!r} yet (made before the tenant's first "
                            "job or server)") from None
        raise ScanError(f"cannot read claim {namespace}/{claim}: {e.status} {e.reason}") from None
    phase = pvc.status.phase if pvc.status else None
    if phase != "Bound":
        raise ScanError(f"claim {namespace}/{claim} is {phase or 'not bound'}: nothing to measure yet")
    name = dns_label(f"{dns_label(ex.instance, 30)}-scan-{dns_label(tenant, 20)}-{int(time.time())}", 63)
    await batch.create_namespaced_job(namespace, scan_manifest(ex, tenant, namespace, claim, name, int(timeout_s)),
                                      _request_timeout=t)
    try:
        deadline, stuck_since = time.monotonic() + timeout_s + 30, None
        while time.monotonic() < deadline:
            pods = (await core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}",
                                                   _request_timeout=t)).items
            done = next((term for term in map(_terminated, pods) if term is not None), None)
            if done is not None:
                if done.exit_code != 0:
                    raise ScanError(f"the scan pod of {namespace}/{claim} failed (exit {done.exit_code}, "
                                    f"{done.reason}): {(done.message or '')[:300]}")
                try:
                    got = json.loads(done.message or "")
                except ValueError:
                    raise ScanError(f"the scan pod of {namespace}/{claim} said no result") from None
                if not isinstance(got, dict) or not isinstance(got.get("bytes"), int):
                    raise ScanError(f"the scan pod of {namespace}/{claim} gave no byte count")
                return got
            stuck = next((c.message for p in pods for c in (p.status.conditions or []) if p.status
                          and c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"), None)
            stuck_since = (stuck_since or time.monotonic()) if stuck else None
            if stuck and time.monotonic() - stuck_since > UNSCHEDULABLE_S:  # not a passing shortage
                raise ScanError(f"the scan pod of {namespace}/{claim} cannot be scheduled: {stuck}")
            await asyncio.sleep(poll_s)
        raise ScanError(f"the scan of {namespace}/{claim} did not end within {timeout_s:g} s")
    finally:
        try:
            await batch.delete_namespaced_job(name, namespace, propagation_policy="Background", _request_timeout=t)
        except ApiException:
            pass  # its ttlSecondsAfterFinished removes it
