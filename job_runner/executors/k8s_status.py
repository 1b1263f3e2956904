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
CLUSTER_REASONS = ("OOMKilled", "Evicted", "Preempted", "DeadlineExceeded", "Unschedulable", "ImagePullBackOff",
                   "JobNotFound", "JobReplaced") + CONFIG_ERROR_REASONS
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


def state_of(kjob, pods: list, pending_since: dict, pending_timeout_s: float) -> ExecState:
    """ExecState from a Job and its pods. ``pending_since``: Job name -> since when its pod is stuck
    (updated here); a pod stuck longer than ``pending_timeout_s`` fails the Job."""
    conditions = {c.type: c for c in (get(kjob, "status", "conditions") or []) if c.status == "True"}
    pod = pods[-1] if pods else None
    if "Complete" in conditions:
        return ExecState(SUCCEEDED, message="Job complete")
    failed_cond = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed_cond is not None:
        return ExecState(FAILED, failure=failure_of(failed_cond, pods))
    if pod is not None and get(pod, "status", "phase") == "Failed":
        # The Job controller has not yet written its condition; the pod already says why.
        return ExecState(FAILED, failure=failure_of(None, pods))
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
    for pod in reversed(pods):
        status = pod.status
        disruption = next((c for c in (status.conditions or []) if c.type == "DisruptionTarget"
                           and c.status == "True"), None)
        if status.reason == "Evicted" or disruption is not None:
            reason = "Preempted" if disruption is not None and "Preemption" in (disruption.reason or "") else "Evicted"
            msg = status.message or (disruption.message if disruption is not None else "") or reason
            return failure(INFRASTRUCTURE, f"the pod was {reason.lower()}: {msg}", reason=reason)
        if status.reason == "DeadlineExceeded":
            return failure(TIMEOUT, "the Job ran past its deadline", reason="DeadlineExceeded")
        for cs in status.container_statuses or []:
            term = get(cs, "state", "terminated") or get(cs, "last_state", "terminated")
            if term is None or term.exit_code == 0:
                continue
            if term.reason == "OOMKilled" or term.exit_code == OOM_EXIT_CODE:
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
    if job_condition is not None:
        reason = job_condition.reason or "Failed"
        if reason == "DeadlineExceeded":
            return failure(TIMEOUT, "the Job ran past its deadline (activeDeadlineSeconds)", reason=reason)
        return failure(INFRASTRUCTURE, job_condition.message or f"the Job failed: {reason}", reason=reason)
    return failure(INFRASTRUCTURE, "the pod failed", reason="Failed")


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
