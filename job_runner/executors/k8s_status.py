"""Reading a Kubernetes Job's outcome from the Job and its pods (pure functions, tested on real API objects)."""
from __future__ import annotations

import json
import time

from job_runner.failures import CANCELLED, CELL_ERROR, INFRASTRUCTURE, KERNEL_DIED, TIMEOUT, failure
from job_runner.pod import EXIT_CODES, OOM_EXIT_CODE

from .base import FAILED, RUNNING, STARTING, SUCCEEDED, ExecState

# Container "waiting" reasons that never resolve by themselves.
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERROR_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# Failure reasons only Kubernetes can see (the pod never got to report, or was killed).
# A pod lost under a running job (restart from checkpoint): deleted through the API by someone other than the
# service (kubectl delete, a drain's eviction, an operator), or its node gone (pod GC, taint eviction). The
# pod's own report then says "cancelled" (it got SIGTERM), which must not hide the loss: the class is
# infrastructure, which the retry policy retries (DEFAULT_RETRY_ON).
LOST_REASONS = ("PodDeleted", "NodeLost")
CLUSTER_REASONS = ("OOMKilled", "Evicted", "Preempted", "DeadlineExceeded", "Unschedulable", "ImagePullBackOff",
                   "JobNotFound", "JobReplaced") + CONFIG_ERROR_REASONS + LOST_REASONS
# DisruptionTarget reasons (set by Kubernetes on the pods it is about to delete) that mean the node is gone.
NODE_LOST_DISRUPTIONS = ("DeletionByPodGC", "DeletionByTaintManager")
# Exit code of job_runner.pod -> failure class.
EXIT_CLASSES = {code: cls for cls, code in EXIT_CODES.items() if cls}


def get(obj, *path, default=None):
    """obj.a.b.c for kubernetes_asyncio models, tolerating None on the way."""
    for name in path:
        if obj is None:
            return default
        obj = getattr(obj, name, None)
    return default if obj is None else obj


def finished(kjob) -> bool:
    """The Job has ended (Complete or Failed): left to ttlSecondsAfterFinished, never an orphan to stop."""
    return any(c.type in ("Complete", "Failed") and c.status == "True"
               for c in (get(kjob, "status", "conditions") or []))


def terminal(pod) -> bool:
    """The pod's containers have ended (its phase says so): it can no longer run or write anything."""
    return get(pod, "status", "phase") in ("Succeeded", "Failed")


def state_of(kjob, pods: list, pending_since: dict, pending_timeout_s: float, lost: dict | None = None) -> ExecState:
    """ExecState from a Job and its pods. ``pending_since``: Job name -> since when its pod is stuck
    (updated here); a pod stuck longer than ``pending_timeout_s`` fails the Job. ``lost``: Job name -> how
    its pod was lost, as seen while it stopped (updated here): the pod is usually gone from the API by the
    next poll, and with it its DisruptionTarget (evicted, node lost).

    A failure is final only once no pod of the Job can still run: the Job controller marks a Job failed
    (``FailureTarget``) as soon as its pod is deleted, while the pod may run for its whole grace period (on
    a node that is gone, until Kubernetes deletes it). Reporting the failure then would let the retry's new
    pod run beside the old one (two writers of one checkpoint folder) and free the slice the old one still
    uses; so until then the job stays running, with a message saying what it waits for."""
    conditions = {c.type: c for c in (get(kjob, "status", "conditions") or []) if c.status == "True"}
    pod = pods[-1] if pods else None
    if "Complete" in conditions:
        return ExecState(SUCCEEDED, message="Job complete")
    failed_cond = conditions.get("Failed") or conditions.get("FailureTarget")
    stopping = [p for p in pods if not terminal(p)]
    name = get(kjob, "metadata", "name")
    lost = {} if lost is None else lost
    if stopping and (failed_cond is not None or any(get(p, "metadata", "deletion_timestamp") for p in pods)):
        p = stopping[-1]
        deleted = get(p, "metadata", "deletion_timestamp") is not None
        if deleted:
            # keep the most telling reason seen while it stops: its DisruptionTarget condition (evicted,
            # preempted, node lost) may be written after the first poll saw the deletion, and a later
            # status (the kubelet's Failed) need not carry it again
            seen, now = lost.get(name), loss_of(p)
            if seen is None or now.get("reason") != "PodDeleted":
                lost[name] = now
        why = "its pod is being deleted" if deleted else "the Job failed"
        return ExecState(RUNNING, message=f"{why}: waiting for pod {p.metadata.name} on "
                                          f"{get(p, 'spec', 'node_name') or 'no node'} to stop before ending the attempt")
    seen_lost = lost.pop(name, None)
    if failed_cond is not None or (pod is not None and get(pod, "status", "phase") == "Failed"):
        # (without a condition: the Job controller has not yet written it; the pod already says why)
        fail = failure_of(failed_cond, pods)
        if seen_lost is not None and fail.get("reason") == "PodDeleted":
            fail = seen_lost  # what the pod's conditions said while it stopped (evicted, its node lost)
        return ExecState(FAILED, failure=fail)
    if pod is not None and get(pod, "status", "phase") == "Running":
        pending_since.pop(get(kjob, "metadata", "name"), None)
        return ExecState(RUNNING, message=f"running on {pod.spec.node_name}")
    stuck = stuck_reason(pod)
    if stuck:
        key = get(kjob, "metadata", "name")
        since = pending_since.setdefault(key, time.monotonic())
        if time.monotonic() - since > pending_timeout_s:
            reason, message = stuck
            return ExecState(FAILED, failure=failure(INFRASTRUCTURE, message, reason=reason))
        return ExecState(STARTING, message=stuck[1])
    if get(kjob, "spec", "suspend"):
        return ExecState(STARTING, message="suspended: waiting for Kueue to admit the Job")
    return ExecState(STARTING, message="pod pending" if pod is not None else "waiting for the Job's pod")

def stuck_reason(pod):
    """(reason, message) when a pending pod cannot progress by itself."""
    if pod is None:
        return None
    for cond in get(pod, "status", "conditions") or []:
        if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
            return "Unschedulable", f"no node can take the pod: {cond.message or ''}".strip()
    for cs in get(pod, "status", "container_statuses") or []:
        waiting = get(cs, "state", "waiting")
        if waiting is not None and waiting.reason in IMAGE_PULL_REASONS:
            return "ImagePullBackOff", f"cannot pull image {cs.image}: {waiting.message or waiting.reason}"
        if waiting is not None and waiting.reason in CONFIG_ERROR_REASONS:
            return waiting.reason, f"cannot start the container: {waiting.message or waiting.reason}"
    return None

def failure_of(job_condition, pods: list) -> dict:
    """The failure of a Job: the pods' status says more than the Job's condition."""
    if job_condition is not None and job_condition.reason == "DeadlineExceeded":
        # The Job controller deletes the pods of a Job past its deadline: not a lost pod.
        return failure(TIMEOUT, "the Job ran past its deadline (activeDeadlineSeconds)", reason="DeadlineExceeded")
    if job_condition is not None and not pods:
        # Failed, and no pod left: the pod was removed before it ended (force-deleted, or deleted with its
        # node); a pod that ends by itself stays until its Job is deleted.
        return failure(INFRASTRUCTURE, "the job's pod was deleted before it ended (by an operator, a drain or "
                                       "the loss of its node)", reason="PodDeleted")
    for pod in reversed(pods):
        status = pod.status
        if status.reason == "Evicted" or disruption_of(pod) is not None:
            return loss_of(pod)
        if status.reason == "DeadlineExceeded":
            return failure(TIMEOUT, "the Job ran past its deadline", reason="DeadlineExceeded")
        if get(pod, "metadata", "deletion_timestamp") is not None:
            own = container_failure(pod)
            if own is None or own.get("class") in (CANCELLED, INFRASTRUCTURE):
                # SIGTERM from the deletion (the pod reports "cancelled"), or SIGKILL after the grace period.
                return loss_of(pod)
            return own  # it had ended by itself (a cell error, out of memory) before it was deleted
        own = container_failure(pod)
        if own is not None:
            return own
    if job_condition is not None:
        reason = job_condition.reason or "Failed"
        return failure(INFRASTRUCTURE, job_condition.message or f"the Job failed: {reason}", reason=reason)
    return failure(INFRASTRUCTURE, "the pod failed", reason="Failed")


def disruption_of(pod):
    """The pod's DisruptionTarget condition (Kubernetes is about to delete it, and says why), if any."""
    return next((c for c in (get(pod, "status", "conditions") or []) if c.type == "DisruptionTarget"
                 and c.status == "True"), None)


def loss_of(pod) -> dict:
    """The infrastructure failure of a pod Kubernetes took away: evicted (a drain, node pressure),
    preempted, its node lost, or deleted through the API by someone other than the service."""
    status, disruption = pod.status, disruption_of(pod)
    if disruption is not None and disruption.reason in NODE_LOST_DISRUPTIONS:
        return failure(INFRASTRUCTURE, f"the pod's node {get(pod, 'spec', 'node_name') or ''} was lost: "
                       f"{disruption.message or disruption.reason}", reason="NodeLost")
    if status.reason == "Evicted" or disruption is not None:
        reason = "Preempted" if disruption is not None and "Preemption" in (disruption.reason or "") else "Evicted"
        msg = status.message or (disruption.message if disruption is not None else "") or reason
        return failure(INFRASTRUCTURE, f"the pod was {reason.lower()}: {msg}", reason=reason)
    return failure(INFRASTRUCTURE, f"the job's pod {pod.metadata.name} was deleted while it ran "
                   "(by an operator, a drain, or the loss of its node)", reason="PodDeleted")


def container_failure(pod) -> dict | None:
    """The failure the pod's container ended with (exit code, OOM kill, its termination message), else None."""
    for cs in get(pod, "status", "container_statuses") or []:
        term = get(cs, "state", "terminated") or get(cs, "last_state", "terminated")
        if term is None or term.exit_code == 0:
            continue
        if term.reason == "OOMKilled" or (term.exit_code == OOM_EXIT_CODE and not get(pod, "metadata",
                                                                                      "deletion_timestamp")):
            # 137 is SIGKILL: the OOM killer's, unless the pod was being deleted (killed after its grace period)
            return failure(KERNEL_DIED, "the pod ran out of memory (OOMKilled)", reason="OOMKilled",
                           exit_code=term.exit_code)
        detail = parse_termination_message(term.message)
        if detail:
            detail.setdefault("reason", term.reason or "Error")
            return detail
        cls = EXIT_CLASSES.get(term.exit_code, INFRASTRUCTURE)
        messages = {CELL_ERROR: "a cell raised", KERNEL_DIED: "the kernel died",
                    TIMEOUT: "the job ran past its timeout", CANCELLED: "the job's pod was stopped"}
        return failure(cls, messages.get(cls, f"the pod failed with exit code {term.exit_code}"),
                       reason=term.reason or "Error", exit_code=term.exit_code)
    return None


def parse_termination_message(message: str | None) -> dict | None:
    """job_runner.pod writes its failure as JSON to /dev/termination-log."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("class") and data.get("message"):
        return data
    return None
