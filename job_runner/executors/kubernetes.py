"""KubernetesExecutor: one ``batch/v1`` Job per admitted attempt of a notebook job.

The Job runs ``python -m job_runner.pod`` in the profile's image, in the tenant's namespace, with the
slice rendered by ``job_runner.binding.kube.SliceRenderer`` (the same rendering as the servers of
``KubeGPUSpawner``). Retries are the service's: each attempt is its own Job (``backoffLimit: 0``), named
``<instance>-job-<id>-<attempt>``, so ``start`` is idempotent (a second start finds the first Job) and
``adopt`` after a restart finds it again by labels. Failure reasons come from the pods' status.
Pods run as non-root without a service-account token; the per-job token is in a Secret owned by the Job.
Client: ``kubernetes_asyncio`` (as kubespawner), with plain-dict manifests. Nodes that cannot take work: k8s_nodes.py.
"""
from __future__ import annotations

import asyncio
import json
import time

from traitlets import Any, Bool, Dict, Float, Instance, Int, List, Unicode, default

from job_runner.binding.kube import SliceRenderer, dns_label, label_value
from job_runner.failures import INFRASTRUCTURE, failure
from job_runner.pod import job_token

from . import runfiles
from .base import FAILED, ExecState, Executor, JobSpec
from .k8s_manifest import (ATTEMPT_LABEL, CONTAINER_NAME, INSTANCE_LABEL, JOB_ID_LABEL, MANAGED_BY_LABEL,
                           job_manifest, token_secret_manifest)
from .k8s_claims import CheckpointClaims, ensure_claims  # tenant storage (issue 15 C), checkpoint folders
from .k8s_nodes import NodeAvailability
from .k8s_status import CLUSTER_REASONS, finished, state_of


class KubernetesExecutor(NodeAvailability, Executor, CheckpointClaims):
    """Runs each attempt of a notebook job as a Kubernetes Job in the tenant's namespace."""

    name = "kubernetes"

    kubeconfig = Unicode("", config=True,
        help="Path of a kubeconfig file. Empty: the in-cluster service account, else $KUBECONFIG / ~/.kube/config.")
    namespace_template = Unicode("aistack-{tenant}", config=True,
        help="""The namespace of the Jobs of a tenant whose record names no `namespace` (the tenant's
        `namespace` wins: its servers, RBAC and quota live there); '{tenant}' is its name made DNS-safe.""")
    create_namespaces = Bool(True, config=True,
        help="Create a tenant's namespace on its first Job (needs the RBAC to create namespaces).")
    instance = Unicode("aistack", config=True, help="""Value of the aistack.io/instance label on every Job: adopt
        and orphan reconciliation only ever touch Jobs of this instance, so two deployments can share a cluster.""")
    image = Unicode("quay.io/jupyter/scipy-notebook:latest", config=True,
        help="Image of jobs whose profile names none. It must contain this package (job_runner) and papermill.")
    image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of job containers.")
    command = List(["python", "-m", "job_runner.pod"], config=True, help="The container command (the pod entry point).")
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
    ttl_seconds_after_finished = Int(3600, config=True,
        help="ttlSecondsAfterFinished of each Job: Kubernetes deletes finished Jobs (and pods) after this.")
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
    node_selector = Dict({}, config=True,
        help="nodeSelector added to every job pod's (e.g. a pool of job nodes); the slice's own selector wins.")
    tolerations = List([], config=True, help="Tolerations added to every job pod's (e.g. of a tainted job pool).")
    extra_pod_labels = Dict({}, config=True, help="Extra labels on job pods.")
    extra_pod_annotations = Dict({}, config=True, help="Extra annotations on job pods.")
    jobs_dir = Unicode(
        "",
        config=True,
        help="""Where the service keeps what job pods send through the pod endpoints
        (<jobs_dir>/<id>/job.log, attempt-<n>/{progress.json,output.ipynb,result.json}); the service
        sets it. Read for progress, the pod's own failure report, the output and the logs.""",
    )
    run_files = Any(help="""The store of what job pods send (``put``/``get``/``append_log``/``read_log``/
        ``open_output``/``read_output``, job_runner.executors.runfiles): the service sets it from
        AIStackService.run_files (the database with replicas). Default: the folder ``jobs_dir``.""")

    @default("run_files")
    def _run_files_default(self):
        return runfiles.FileRunFiles(self.jobs_dir) if self.jobs_dir else None

    reconcile_namespaces = List(Unicode(), config=True, help="""Namespaces where orphan reconciliation lists Jobs (the
        chart sets the tenants': its Roles are per namespace). Empty: all namespaces (a ClusterRole lists Jobs).""")
    delete_on_cleanup = Bool(False, config=True,
        help="Delete a finished Job at once instead of leaving it to ttlSecondsAfterFinished.")
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
        self._lost_pods: dict[str, dict] = {}  # Job name -> how its pod was lost (k8s_status.state_of)
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
        api, self.api_client = self.api_client, None
        if api is not None:
            await api.close()

    def token_key(self) -> str:
        """The key of the per-job tokens: ours, else the service's (the executor's parent)."""
        key = self.job_token_secret or getattr(self.parent, "job_token_secret", "")
        if not key:
            raise RuntimeError("KubernetesExecutor: no job_token_secret (set it, or run it in the aistack service)")
        return key

    # -- names -----------------------------------------------------------------------------------

    def tenant_namespace(self, tenant: str, namespace: str | None = None) -> str:
        """The tenant's own namespace (its record's ``namespace``), else ``namespace_template``'s."""
        return namespace or dns_label(self.namespace_template.replace("{tenant}", dns_label(tenant)))

    def job_name(self, job_id, attempt) -> str:
        return f"{dns_label(self.instance, 40)}-job-{job_id}-{attempt}"

    def selector(self, job_id=None) -> str:
        sel = f"{MANAGED_BY_LABEL}=aistack,{INSTANCE_LABEL}={label_value(self.instance)}"
        if job_id is not None:
            sel += f",{JOB_ID_LABEL}={job_id}"
        return sel

    # -- the manifest ----------------------------------------------------------------------------

    def job_manifest(self, job: JobSpec, assignment: dict | None) -> dict:
        """The batch/v1 Job of one attempt (``k8s_manifest.job_manifest``; also used by tests and the benchmark)."""
        return job_manifest(self, job, assignment)

    def state_of(self, kjob, pods: list, handle: dict | None = None) -> ExecState:
        """ExecState from a Job and its pods (``k8s_status.state_of``, with this executor's stuck-pod timer)."""
        return state_of(kjob, pods, self._pending_since, self.pending_timeout_s, self._lost_pods)

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

        manifest = await asyncio.to_thread(self.job_manifest, job, assignment)  # its storage hooks read the db
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        batch, _ = await self._apis()
        await self.ensure_namespace(ns)
        await ensure_claims(self, job.tenant, ns)  # the tenant's claims (storage, checkpoints), before its pod
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
        handle = {"namespace": ns, "name": name, "job_id": job.id, "attempt": job.attempt, "uid": created.metadata.uid}
        await self._ensure_token_secret(handle)
        return handle

    async def _ensure_token_secret(self, handle: dict):
        """The per-job token as a Secret owned by the Job (garbage-collected with it)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        _, core = await self._apis()
        secret = token_secret_manifest(self, handle, job_token(self.token_key(), handle["job_id"], handle["attempt"]))
        try:
            await core.create_namespaced_secret(handle["namespace"], secret, _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status != 409:
                raise

    async def adopt(self, job: JobSpec) -> dict | None:
        """After a restart: the Job of this job's current attempt, found by labels (None if none)."""
        batch, _ = await self._apis()
        ns = self.tenant_namespace(job.tenant, job.namespace)
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
        for per_job in (self._pending_since, self._lost_pods):
            per_job.pop(handle.get("name"), None)
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

    async def reconcile(self, live: set[tuple[int, int]]) -> list[str]:
        """Delete this instance's unfinished Jobs whose (job id, attempt) is not in ``live`` (the attempts
        the database says are admitted or running): a cancel or timeout whose delete was lost, a Job of
        a database that was reset. Finished Jobs are left to ttlSecondsAfterFinished (their logs stay)."""
        batch, _ = await self._apis()
        kw = {"label_selector": self.selector(), "_request_timeout": self.request_timeout_s}
        items = [] if self.reconcile_namespaces else (await batch.list_job_for_all_namespaces(**kw)).items
        for ns in self.reconcile_namespaces:
            items += (await batch.list_namespaced_job(ns, **kw)).items
        deleted = []
        for item in items:
            labels = item.metadata.labels or {}
            try:
                key = (int(labels.get(JOB_ID_LABEL)), int(labels.get(ATTEMPT_LABEL)))
            except (TypeError, ValueError):
                continue
            if key not in live and not item.metadata.deletion_timestamp and not finished(item):
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
        return await asyncio.to_thread(self._with_pod_reports, state, handle)

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

    def _report(self, handle: dict, name: str) -> dict | None:
        try:
            return json.loads(self.run_files.get(handle["job_id"], handle["attempt"], name) or b"null")
        except ValueError:
            return None

    def _with_pod_reports(self, state: ExecState, handle: dict) -> ExecState:
        """Add what the pod reported through the service (progress; its own failure, which knows the
        failing cell) to what Kubernetes says. Kubernetes' reason wins where only it can know it.
        Blocking (the store's reads): poll calls it in a thread."""
        if self.run_files is None or "job_id" not in handle:
            return state
        state.progress = self._report(handle, "progress.json") or state.progress
        if state.state == FAILED:
            reported = self._report(handle, "result.json") or {}
            fail = reported.get("failure") if isinstance(reported, dict) else None
            if isinstance(fail, dict) and fail.get("class") and state.failure.get("reason") not in CLUSTER_REASONS:
                state.failure = {**fail, "reason": state.failure.get("reason")}
        return state

    # -- output and logs for the API -------------------------------------------------------------

    async def read_output(self, job: JobSpec) -> str | None:
        """The output notebook the pod uploaded (the newest attempt that has one)."""
        if self.run_files is None:
            return None
        return await asyncio.to_thread(self.run_files.read_output, job.id, job.attempt)

    async def read_logs(self, job: JobSpec, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        """The log the pod streamed to the service; else the container log (through the API server)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if self.run_files is not None:
            got = await asyncio.to_thread(self.run_files.read_log, job.id, offset, limit)
            if got is not None:
                return got
        _, core = await self._apis()
        ns, name = self.tenant_namespace(job.tenant, job.namespace), self.job_name(job.id, job.attempt)
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
