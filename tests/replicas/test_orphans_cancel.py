"""The scheduling loop (job_runner.controller.Controller) with the KubernetesExecutor on the real control
plane (tests/k8s; kwok keeps pods 'running'): runs the database does not know are deleted by the periodic
reconcile, and a cancel whose delete fails is retried until it succeeds. The failing delete is real: the
executor talks to the API server as a user the RBAC authorizer first refuses `delete jobs` (impersonation
by the cluster admin), then allows."""
import asyncio
import time
import uuid

import pytest

from job_runner.controller import Controller
from job_runner.db import Job
from job_runner.executors.k8s_manifest import ATTEMPT_LABEL, INSTANCE_LABEL, JOB_ID_LABEL, MANAGED_BY_LABEL
from tests.k8s_workloads.test_k8s_workloads_cluster import _db, _deployment, _executor, _k8s_jobs, _run_until, _submit

pytestmark = pytest.mark.k8s
KEEP_RUNNING = {"pod-complete.stage.kwok.x-k8s.io/delay": "600s", "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "600s"}


@pytest.fixture
def instance():
    return "o-" + uuid.uuid4().hex[:8]


async def _tick_until(queue, predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await queue.tick()
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout}s")


def _live_jobs(cp, job_id, instance):
    return [j for j in _k8s_jobs(cp, job_id, instance) if not j["metadata"].get("deletionTimestamp")]


async def test_an_orphan_job_in_the_cluster_is_deleted_by_reconcile(k8s_control_plane, tmp_path, instance):
    """Closes: orphaned Jobs and pods cleaned (a Job of this instance that no database row knows, e.g. left by
    a database that was reset, is deleted by the controller's periodic reconcile)."""
    cp = k8s_control_plane
    deployment = _deployment(cp)
    db = _db(tmp_path, deployment)
    ex = _executor(cp, instance)
    queue = Controller(db, deployment, ex, reconcile_interval_s=0.001)
    ns = "aistack-team-a"
    await ex.ensure_namespace(ns)
    cp.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": f"{instance}-job-4242-1", "namespace": ns,
        "labels": {MANAGED_BY_LABEL: "aistack", INSTANCE_LABEL: instance, JOB_ID_LABEL: "4242", ATTEMPT_LABEL: "1"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": KEEP_RUNNING},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "none.invalid/none"}]}}}})
    try:
        assert len(_live_jobs(cp, 4242, instance)) == 1
        await _tick_until(queue, lambda: not _live_jobs(cp, 4242, instance), what="orphan deleted")
    finally:
        queue.stop()
        await ex.close()


def _rbac(name: str, user: str, verbs_on_jobs: list[str]) -> list[dict]:
    rules = [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": verbs_on_jobs},
             {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get"]},
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "get"]}]
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}]


async def test_a_cancel_that_fails_is_retried_until_it_succeeds(k8s_control_plane, tmp_path, instance):
    """Closes: a failed cancel is retried (the request stays recorded, the job keeps its slice and state until
    the executor's delete succeeds on a later pass; no Job left running outside the scheduler)."""
    from kubernetes_asyncio import client, config

    cp = k8s_control_plane
    user = f"aistack-{instance}"
    cp.apply(_rbac(f"{instance}-base", user, ["create", "get", "list", "watch"]))  # no delete yet
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)
    api = client.ApiClient(configuration=cfg)
    api.set_default_header("Impersonate-User", user)
    deployment = _deployment(cp)
    db = _db(tmp_path, deployment)
    ex = _executor(cp, instance, api_client=api, extra_pod_annotations=KEEP_RUNNING)
    queue = Controller(db, deployment, ex, reconcile_interval_s=0)  # only the cancel path may delete
    job_id = _submit(db, deployment)
    try:
        await _run_until(queue, db, job_id, ("running",))
        with db.session() as s:  # what POST jobs/{id}/cancel writes for a running job
            s.get(Job, job_id).cancel_requested = 1
        for _ in range(3):  # refused (403) on each pass: the job stays running, its request kept
            await queue.tick()
        with db.session() as s:
            row = s.get(Job, job_id)
            assert (row.state, row.cancel_requested) == ("running", 1)
        assert len(_live_jobs(cp, job_id, instance)) == 1
        cp.apply(_rbac(f"{instance}-delete", user, ["delete"]))
        await _tick_until(queue, lambda: _job_state(db, job_id) == "cancelled", what="the cancel to succeed")
        assert _live_jobs(cp, job_id, instance) == []
        with db.session() as s:
            assert s.get(Job, job_id).cancel_requested == 2
    finally:
        queue.stop()
        await ex.close()
        cp.kubectl("delete", "clusterrole,clusterrolebinding", f"{instance}-base", f"{instance}-delete",
                   "--ignore-not-found", check=False)


def _job_state(db, job_id):
    with db.session() as s:
        return s.get(Job, job_id).state
