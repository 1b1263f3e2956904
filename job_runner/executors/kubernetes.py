"""KubernetesExecutor: one ``batch/v1`` Job per admitted attempt of a notebook job.

The Job runs ``python -m job_runner.pod`` in the profile's image, in the tenant's namespace, with the
slice rendered by ``job_runner.binding.kube.SliceRenderer`` (the same rendering as the servers of
``KubeGPUSpawner``). Retries are the service's: each attempt is its own Job (``backoffLimit: 0``), named
``<instance>-job-<id>-<attempt>``, so ``start`` is idempotent (a second start finds the first Job) and
``adopt`` after a restart finds it again by labels. Failure reasons come from the pods' status.
Pods run as non-root without a service-account token; the per-job token is in a Secret owned by the Job.

Client: ``kubernetes_asyncio`` (as kubespawner), with plain-dict manifests.
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import time

from traitlets import Any, Bool, Dict, Float, Instance, Int, List, Unicode, default

from job_runner.failures import CANCELLED, CELL_ERROR, INFRASTRUCTURE, KERNEL_DIED, TIMEOUT, failure
from job_runner.pod import EXIT_CODES, OOM_EXIT_CODE, job_token
from job_runner.run_notebook import read_json as _read_json
from job_runner.binding.kube import LABEL_PREFIX, SliceRenderer, dns_label, label_value

from .base import FAILED, RUNNING, STARTING, SUCCEEDED, ExecState, Executor, JobSpec

JOB_ID_LABEL = LABEL_PREFIX + "job-id"
ATTEMPT_LABEL = LABEL_PREFIX + "attempt"
USER_LABEL = LABEL_PREFIX + "user"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = LABEL_PREFIX + "instance"
CONTAINER_NAME = "notebook"
DEVICE_PLUGIN_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                     "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")

# Container "waiting" reasons that never resolve by themselves.
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERROR_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# Failure reasons only Kubernetes can see (the pod never got to report, or was killed).
CLUSTER_REASONS = ("OOMKilled", "Evicted", "Preempted", "DeadlineExceeded", "Unschedulable", "ImagePullBackOff",
                   "JobNotFound", "JobReplaced") + CONFIG_ERROR_REASONS
# Exit code of job_runner.pod -> failure class.
EXIT_CLASSES = {code: cls for cls, code in EXIT_CODES.items() if cls}


def _get(obj, *path, default=None):
    """obj.a.b.c for kubernetes_asyncio models, tolerating None on the way."""
    for name in path:
        if obj is None:
            return default
        obj = getattr(obj, name, None)
    return default if obj is None else obj


class KubernetesExecutor(Executor):
    """Runs each attempt of a notebook job as a Kubernetes Job in the tenant's namespace."""

    name = "kubernetes"

    kubeconfig = Unicode(
        "",
        config=True,
        help="Path of a kubeconfig file. Empty: the in-cluster service account, else $KUBECONFIG / ~/.kube/config.",
    )
    namespace_template = Unicode(
        "aistack-{tenant}",
        config=True,
        help="The namespace of a tenant's Jobs; '{tenant}' is the tenant's name made DNS-safe.",
    )
    create_namespaces = Bool(
        True,
        config=True,
        help="Create a tenant's namespace on its first Job (needs the RBAC to create namespaces).",
    )
    instance = Unicode(
        "aistack",
        config=True,
        help="""Value of the aistack.io/instance label on every Job: adopt and orphan reconciliation only
        ever touch Jobs of this instance, so two deployments can share a cluster.""",
    )
    image = Unicode(
        "quay.io/jupyter/scipy-notebook:latest",
        config=True,
        help="Image of jobs whose profile names none. It must contain this package (job_runner) and papermill.",
    )
    image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of job containers.")
    command = List(
        ["python", "-m", "job_runner.pod"],
        config=True,
        help="The container command (the pod entry point).",
    )
    service_url = Unicode(
        "",
        config=True,
        help="""The aistack service's API URL as pods reach it (e.g.
        http://hub.aistack.svc:8081/services/aistack/api/). Set as AISTACK_SERVICE_URL in the pod.""",
    )
    job_token_secret = Unicode(
        "",
        config=True,
        help="""Key of the per-job tokens (job_runner.pod.job_token); the service checks tokens with the
        same key. Empty: the service's own (AIStackService.job_token_secret, the executor's parent).""",
    )
    ttl_seconds_after_finished = Int(
        3600,
        config=True,
        help="ttlSecondsAfterFinished of each Job: Kubernetes deletes finished Jobs (and pods) after this.",
    )
    deadline_grace_s = Int(
        120,
        config=True,
        help="""activeDeadlineSeconds = the job's timeout + this (image pull, kernel start): the pod
        enforces the timeout itself; the deadline is the hard stop if it cannot.""",
    )
    run_as_user = Int(1000, config=True, help="runAsUser of job pods (runAsNonRoot is always set).")
    run_as_group = Int(100, config=True, help="runAsGroup and fsGroup of job pods.")
    home_volume_claim_template = Unicode(
        "",
        config=True,
        help="""If set, the PVC mounted at home_mount_path so that relative paths of the notebook work,
        e.g. 'claim-{username}' (the name kubespawner gives home volumes). Empty: no volume.""",
    )
    home_mount_path = Unicode("/home/jovyan", config=True, help="Where the home volume is mounted.")
    pending_timeout_s = Float(
        600.0,
        config=True,
        help="""A pod that stays unschedulable, or cannot pull its image, this long fails its job
        (reason Unschedulable / ImagePullBackOff) instead of waiting forever.""",
    )
    extra_pod_labels = Dict({}, config=True, help="Extra labels on job pods.")
    extra_pod_annotations = Dict({}, config=True, help="Extra annotations on job pods.")
    jobs_dir = Unicode(
        "",
        config=True,
        help="""Where the service keeps what job pods send through the pod endpoints
        (<jobs_dir>/<id>/job.log, attempt-<n>/{progress.json,output.ipynb,result.json}); the service
        sets it. Read for progress, the pod's own failure report, the output and the logs.""",
    )
    delete_on_cleanup = Bool(
        False,
        config=True,
        help="Delete a finished Job at once instead of leaving it to ttlSecondsAfterFinished.",
    )
    renderer = Instance(SliceRenderer, help="Renders slices; configure it as SliceRenderer.")
    request_timeout_s = Float(30.0, config=True, help="Timeout of each Kubernetes API request.")
    poll_snapshot_s = Float(
        1.0,
        config=True,
        help="""poll() reads Jobs and pods from a per-namespace list at most this old (0: read each Job
        on its own). One list per second serves any number of running jobs.""",
    )
    api_client = Any(help="A kubernetes_asyncio ApiClient to use instead of building one (tests).")

    @default("renderer")
    def _renderer_default(self):
        return SliceRenderer(parent=self)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._client_lock = asyncio.Lock()
        self._pending_since: dict[str, float] = {}
        self._snapshots: dict[str, tuple] = {}
        self._namespaces_seen: set[str] = set()
        self._snapshot_locks: dict[str, asyncio.Lock] = {}

    # -- the Kubernetes client -------------------------------------------------------------------

    async def _client(self):
        async with self._client_lock:
            if self.api_client is None:
                from kubernetes_asyncio import client, config

                cfg = client.Configuration()
                if self.kubeconfig:
                    await config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
                else:
                    try:
                        config.load_incluster_config(client_configuration=cfg)
                    except config.ConfigException:
                        await config.load_kube_config(client_configuration=cfg)
                self.api_client = client.ApiClient(configuration=cfg)
            return self.api_client

    async def _apis(self):
        from kubernetes_asyncio import client

        api = await self._client()
        return client.BatchV1Api(api), client.CoreV1Api(api)

    async def close(self):
        if self.api_client is not None:
            await self.api_client.close()
            self.api_client = None

    def token_key(self) -> str:
        """The key of the per-job tokens: ours, else the service's (the executor's parent)."""
        key = self.job_token_secret or getattr(self.parent, "job_token_secret", "")
        if not key:
            raise RuntimeError("KubernetesExecutor: no job_token_secret (set it, or run it in the aistack service)")
        return key

    # -- names -----------------------------------------------------------------------------------

    def namespace_for(self, tenant: str) -> str:
        return dns_label(self.namespace_template.replace("{tenant}", dns_label(tenant)))

    def job_name(self, job_id, attempt) -> str:
        return f"{dns_label(self.instance, 40)}-job-{job_id}-{attempt}"

    def selector(self, job_id=None) -> str:
        sel = f"{MANAGED_BY_LABEL}=aistack,{INSTANCE_LABEL}={label_value(self.instance)}"
        if job_id is not None:
            sel += f",{JOB_ID_LABEL}={job_id}"
        return sel

    # -- the manifest ----------------------------------------------------------------------------

    def job_manifest(self, job: JobSpec, assignment: dict | None) -> dict:
        """The batch/v1 Job of one attempt (a plain dict; also used by the tests and the benchmark)."""
        from job_runner.scheduling import Assignment, SliceRequest

        request = SliceRequest.from_dict(job.request or {"kind": "cpu"})
        assign = Assignment.from_dict(assignment) if assignment else None
        kslice = self.renderer.render(request, tenant=job.tenant, profile=job.profile, workload="job",
                                      assignment=assign)
        name = self.job_name(job.id, job.attempt)
        labels = {
            MANAGED_BY_LABEL: "aistack",
            INSTANCE_LABEL: label_value(self.instance),
            JOB_ID_LABEL: str(job.id),
            ATTEMPT_LABEL: str(job.attempt),
            USER_LABEL: label_value(job.user),
            **kslice.labels,
        }
        queue_label = {k: v for k, v in labels.items() if k.startswith("kueue.x-k8s.io/")}
        pod_labels = {k: v for k, v in labels.items() if k not in queue_label}
        pod_labels.update(self.extra_pod_labels)

        env = {**(job.env or {}), **self.extra_env, **kslice.env,
               "AISTACK_SERVICE_URL": self.service_url, "AISTACK_JOB_ID": str(job.id),
               "AISTACK_JOB_ATTEMPT": str(job.attempt), "AISTACK_USER": job.user}
        # Kubernetes' device plugin picks the devices and sets the sharing limits: the core's host
        # GPU indices mean nothing in the pod.
        for key in DEVICE_PLUGIN_ENV:
            env.pop(key, None)
        env_list = [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
        env_list.append({"name": "AISTACK_JOB_TOKEN",
                         "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}})

        container = {
            "name": CONTAINER_NAME,
            "image": job.image or self.image,
            "imagePullPolicy": self.image_pull_policy,
            "command": list(self.command),
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
                "runAsUser": self.run_as_user,
                "runAsGroup": self.run_as_group,
                "fsGroup": self.run_as_group,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            **kslice.pod_spec_fields(),
        }
        if self.home_volume_claim_template:
            claim = self.home_volume_claim_template.replace("{username}", dns_label(job.user))
            pod_spec["volumes"] = [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}]
            container["volumeMounts"] = [{"name": "home", "mountPath": self.home_mount_path}]
            container["workingDir"] = self.home_mount_path
        spec = {
            "backoffLimit": 0,  # each retry is a new attempt decided by the service's retry policy
            "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": pod_labels,
                                      "annotations": {**kslice.annotations, **self.extra_pod_annotations}},
                         "spec": pod_spec},
        }
        if job.timeout_s:
            spec["activeDeadlineSeconds"] = int(math.ceil(job.timeout_s)) + self.deadline_grace_s
        if queue_label:
            spec["suspend"] = True  # Kueue admits (unsuspends) it
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": self.namespace_for(job.tenant), "labels": labels,
                         "annotations": dict(kslice.annotations)},
            "spec": spec,
        }

    # -- the Executor interface ------------------------------------------------------------------

    async def ensure_namespace(self, namespace: str):
        from kubernetes_asyncio.client.exceptions import ApiException

        if not self.create_namespaces or namespace in self._namespaces_seen:
            return
        _, core = await self._apis()
        try:
            await core.create_namespace({"metadata": {"name": namespace, "labels": {MANAGED_BY_LABEL: "aistack"}}},
                                        _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status != 409:
                raise
        self._namespaces_seen.add(namespace)  # one API call per tenant, not per Job

    async def start(self, job: JobSpec, assignment: dict) -> dict:
        from kubernetes_asyncio.client.exceptions import ApiException

        manifest = self.job_manifest(job, assignment)
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        batch, _ = await self._apis()
        await self.ensure_namespace(ns)
        try:
            created = await batch.create_namespaced_job(ns, manifest, _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status != 409:
                raise
            # Already there (a second start, or a start after a restart): the same Job, not a new one.
            created = await batch.read_namespaced_job(name, ns, _request_timeout=self.request_timeout_s)
            labels = created.metadata.labels or {}
            if (labels.get(JOB_ID_LABEL), labels.get(INSTANCE_LABEL)) != (str(job.id), label_value(self.instance)):
                raise RuntimeError(f"Job {ns}/{name} exists but is not job {job.id}'s") from e
        handle = {"namespace": ns, "name": name, "job_id": job.id, "attempt": job.attempt,
                  "uid": created.metadata.uid}
        await self._ensure_token_secret(handle)
        return handle

    async def _ensure_token_secret(self, handle: dict):
        """The per-job token as a Secret owned by the Job (garbage-collected with it)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        _, core = await self._apis()
        token = job_token(self.token_key(), handle["job_id"], handle["attempt"])
        secret = {
            "metadata": {
                "name": handle["name"],
                "namespace": handle["namespace"],
                "labels": {MANAGED_BY_LABEL: "aistack", INSTANCE_LABEL: label_value(self.instance),
                           JOB_ID_LABEL: str(handle["job_id"])},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": handle["name"],
                                     "uid": handle["uid"], "blockOwnerDeletion": False}],
            },
            "type": "Opaque",
            "data": {"token": base64.b64encode(token.encode()).decode()},
        }
        try:
            await core.create_namespaced_secret(handle["namespace"], secret, _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status != 409:
                raise

    async def adopt(self, job: JobSpec) -> dict | None:
        """After a restart: the Job of this job's current attempt, found by labels (None if none)."""
        batch, _ = await self._apis()
        ns = self.namespace_for(job.tenant)
        jobs = await batch.list_namespaced_job(ns, label_selector=self.selector(job.id),
                                               _request_timeout=self.request_timeout_s)
        for item in jobs.items:
            labels = item.metadata.labels or {}
            if labels.get(ATTEMPT_LABEL) == str(job.attempt) and not item.metadata.deletion_timestamp:
                handle = {"namespace": ns, "name": item.metadata.name, "job_id": job.id,
                          "attempt": job.attempt, "uid": item.metadata.uid}
                await self._ensure_token_secret(handle)
                return handle
        return None

    async def cancel(self, handle: dict) -> None:
        await self._delete_job(handle)

    async def cleanup(self, handle: dict) -> None:
        self._pending_since.pop(handle.get("name"), None)
        if self.delete_on_cleanup:
            await self._delete_job(handle)

    async def _delete_job(self, handle: dict):
        from kubernetes_asyncio.client.exceptions import ApiException

        batch, _ = await self._apis()
        try:
            # Background: the garbage collector deletes the pods (SIGTERM: the pod reports "cancelled")
            # and the token Secret.
            await batch.delete_namespaced_job(handle["name"], handle["namespace"],
                                              propagation_policy="Background",
                                              _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status != 404:
                raise

    async def list_jobs(self, namespace: str | None = None) -> list:
        """Every Job of this instance (all tenant namespaces unless ``namespace``): for reconciliation."""
        batch, _ = await self._apis()
        if namespace:
            res = await batch.list_namespaced_job(namespace, label_selector=self.selector(),
                                                  _request_timeout=self.request_timeout_s)
        else:
            res = await batch.list_job_for_all_namespaces(label_selector=self.selector(),
                                                          _request_timeout=self.request_timeout_s)
        return res.items

    async def delete_orphans(self, live: set[tuple[int, int]], namespaces=None) -> list[str]:
        """Delete Jobs of this instance whose (job id, attempt) is not in ``live`` (the jobs the
        database says are admitted or running). Returns the names deleted."""
        deleted = []
        items = []
        if namespaces:
            for ns in namespaces:
                items += await self.list_jobs(ns)
        else:
            items = await self.list_jobs()
        for item in items:
            labels = item.metadata.labels or {}
            try:
                key = (int(labels.get(JOB_ID_LABEL)), int(labels.get(ATTEMPT_LABEL)))
            except (TypeError, ValueError):
                continue
            if key not in live and not item.metadata.deletion_timestamp:
                await self._delete_job({"name": item.metadata.name, "namespace": item.metadata.namespace})
                deleted.append(f"{item.metadata.namespace}/{item.metadata.name}")
        return deleted

    async def poll(self, handle: dict) -> ExecState:
        from kubernetes_asyncio.client.exceptions import ApiException

        ns, name = handle["namespace"], handle["name"]
        jobs, pods_by_job = await self._snapshot(ns)
        kjob = jobs.get(name)
        pods = pods_by_job.get(name, [])
        if kjob is None:
            # Not in the namespace snapshot (created after it, or gone): ask for this one Job.
            batch, core = await self._apis()
            try:
                kjob = await batch.read_namespaced_job(name, ns, _request_timeout=self.request_timeout_s)
            except ApiException as e:
                if e.status == 404:
                    return ExecState(FAILED, failure=failure(
                        INFRASTRUCTURE, f"Job {ns}/{name} is gone", reason="JobNotFound"))
                raise
            pods = (await core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}",
                                                   _request_timeout=self.request_timeout_s)).items
        if handle.get("uid") and kjob.metadata.uid != handle["uid"]:
            return ExecState(FAILED, failure=failure(
                INFRASTRUCTURE, "the Job was replaced by another one of the same name", reason="JobReplaced"))
        pods = sorted(pods, key=lambda p: p.metadata.creation_timestamp or 0)
        state = self.state_of(kjob, pods, handle)
        return self._with_pod_reports(state, handle)

    async def _snapshot(self, ns: str):
        """This instance's Jobs and their pods in ``ns``, listed at most every ``poll_snapshot_s``:
        polling N running jobs costs two list calls per namespace, not 2N reads."""
        if self.poll_snapshot_s <= 0:
            return {}, {}
        lock = self._snapshot_locks.setdefault(ns, asyncio.Lock())
        async with lock:
            at, jobs, pods = self._snapshots.get(ns, (0.0, {}, {}))
            if time.monotonic() - at < self.poll_snapshot_s:
                return jobs, pods
            batch, core = await self._apis()
            sel = self.selector()
            job_list, pod_list = await asyncio.gather(
                batch.list_namespaced_job(ns, label_selector=sel, _request_timeout=self.request_timeout_s),
                core.list_namespaced_pod(ns, label_selector=sel, _request_timeout=self.request_timeout_s))
            jobs = {j.metadata.name: j for j in job_list.items}
            pods = {}
            for p in pod_list.items:
                owner = (p.metadata.labels or {}).get("batch.kubernetes.io/job-name")
                if owner:
                    pods.setdefault(owner, []).append(p)
            self._snapshots[ns] = (time.monotonic(), jobs, pods)
            return jobs, pods

    def _attempt_file(self, job_id, attempt, name: str) -> str:
        return os.path.join(self.jobs_dir, str(int(job_id)), f"attempt-{int(attempt)}", name)

    def _with_pod_reports(self, state: ExecState, handle: dict) -> ExecState:
        """Add what the pod reported through the service (progress; its own failure, which knows the
        failing cell) to what Kubernetes says. Kubernetes' reason wins where only it can know it."""
        if not self.jobs_dir or "job_id" not in handle:
            return state
        state.progress = _read_json(self._attempt_file(handle["job_id"], handle["attempt"], "progress.json")) \
            or state.progress
        if state.state == FAILED:
            reported = (_read_json(self._attempt_file(handle["job_id"], handle["attempt"], "result.json")) or {})
            fail = reported.get("failure")
            if isinstance(fail, dict) and fail.get("class") and state.failure.get("reason") not in CLUSTER_REASONS:
                state.failure = {**fail, "reason": state.failure.get("reason")}
        return state

    # -- reading the status ----------------------------------------------------------------------

    def state_of(self, kjob, pods: list, handle: dict | None = None) -> ExecState:
        """ExecState from a Job and its pods (pure: tested on real API objects)."""
        conditions = {c.type: c for c in (_get(kjob, "status", "conditions") or []) if c.status == "True"}
        pod = pods[-1] if pods else None
        if "Complete" in conditions:
            return ExecState(SUCCEEDED, message="Job complete")
        failed_cond = conditions.get("Failed") or conditions.get("FailureTarget")
        if failed_cond is not None:
            return ExecState(FAILED, failure=self.failure_of(failed_cond, pods))
        if pod is not None and _get(pod, "status", "phase") == "Failed":
            # The Job controller has not yet written its condition; the pod already says why.
            return ExecState(FAILED, failure=self.failure_of(None, pods))
        if pod is not None and _get(pod, "status", "phase") == "Running":
            self._pending_since.pop(_get(kjob, "metadata", "name"), None)
            return ExecState(RUNNING, message=f"running on {pod.spec.node_name}")
        stuck = self._stuck_reason(pod)
        if stuck:
            key = _get(kjob, "metadata", "name")
            since = self._pending_since.setdefault(key, time.monotonic())
            if time.monotonic() - since > self.pending_timeout_s:
                reason, message = stuck
                return ExecState(FAILED, failure=failure(INFRASTRUCTURE, message, reason=reason))
            return ExecState(STARTING, message=stuck[1])
        if _get(kjob, "spec", "suspend"):
            return ExecState(STARTING, message="suspended: waiting for Kueue to admit the Job")
        return ExecState(STARTING, message="pod pending" if pod is not None else "waiting for the Job's pod")

    @staticmethod
    def _stuck_reason(pod):
        """(reason, message) when a pending pod cannot progress by itself."""
        if pod is None:
            return None
        for cond in _get(pod, "status", "conditions") or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return "Unschedulable", f"no node can take the pod: {cond.message or ''}".strip()
        for cs in _get(pod, "status", "container_statuses") or []:
            waiting = _get(cs, "state", "waiting")
            if waiting is not None and waiting.reason in IMAGE_PULL_REASONS:
                return "ImagePullBackOff", f"cannot pull image {cs.image}: {waiting.message or waiting.reason}"
            if waiting is not None and waiting.reason in CONFIG_ERROR_REASONS:
                return waiting.reason, f"cannot start the container: {waiting.message or waiting.reason}"
        return None

    @staticmethod
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
                term = _get(cs, "state", "terminated") or _get(cs, "last_state", "terminated")
                if term is None or term.exit_code == 0:
                    continue
                if term.reason == "OOMKilled" or term.exit_code == OOM_EXIT_CODE:
                    return failure(KERNEL_DIED, "the pod ran out of memory (OOMKilled)", reason="OOMKilled",
                                   exit_code=term.exit_code)
                detail = _parse_termination_message(term.message)
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

    # -- output and logs for the API -------------------------------------------------------------

    async def read_output(self, job: JobSpec) -> str | None:
        """The output notebook the pod uploaded (the newest attempt that has one)."""
        if not self.jobs_dir:
            return None
        for attempt in range(job.attempt, 0, -1):
            try:
                with open(self._attempt_file(job.id, attempt, "output.ipynb")) as f:
                    return f.read()
            except OSError:
                continue
        return None

    async def read_logs(self, job: JobSpec, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        """The log the pod streamed to the service; else the container log (through the API server)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if self.jobs_dir:
            try:
                with open(os.path.join(self.jobs_dir, str(int(job.id)), "job.log"), "rb") as f:
                    f.seek(offset)
                    data = f.read(limit)
                return data, offset + len(data)
            except OSError:
                pass

        _, core = await self._apis()
        ns, name = self.namespace_for(job.tenant), self.job_name(job.id, job.attempt)
        pods = (await core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}",
                                               _request_timeout=self.request_timeout_s)).items
        if not pods:
            return b"", offset
        try:
            text = await core.read_namespaced_pod_log(pods[-1].metadata.name, ns, container=CONTAINER_NAME,
                                                      _request_timeout=self.request_timeout_s)
        except ApiException:
            return b"", offset
        data = (text or "").encode()
        chunk = data[offset:offset + limit]
        return chunk, offset + len(chunk)


def _parse_termination_message(message: str | None) -> dict | None:
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
