"""Two aistack service replicas on one PostgreSQL, running jobs as Kubernetes Jobs on the real control plane
(tests/k8s: kube-apiserver, controllers, scheduler; kwok keeps the Jobs' pods 'running' since no container
runs here). The job pod's entry point runs for real as a local process (papermill, a real kernel) and sends
its output, log and progress to one replica, as a pod behind the chart's Service reaches a random one.
What is real: both service processes, PostgreSQL, the API server, the executor, the pod's uploads."""
import json
import uuid

import pytest
import requests
import yaml

from job_runner.binding.kube import SliceRenderer
from job_runner.executors.kubernetes import INSTANCE_LABEL
from tests.job_service.helpers import wait_for
from tests.k8s_workloads.inprocess import PROFILES
from tests.replicas.helpers import leader_and_follower, notebook, replica, run_pod

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]


def _fake_nodes(cp) -> list[dict]:
    return [n for n in cp.kubectl_json("get", "nodes")["items"]
            if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"]


@pytest.fixture
def deployment(k8s_control_plane, tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump({
        "tenants": [{"name": "team-a", "quotas": {"any": {"gpu_milli": 16000}}}], "profiles": PROFILES,
        "inventory": SliceRenderer().inventory_config(_fake_nodes(k8s_control_plane))}))
    return str(path)


def test_pod_upload_to_one_replica_survives_the_leader(k8s_control_plane, postgres, deployment, tmp_path):
    """Closes: run files go to one store every replica reads (a pod's upload to the non-leader is read
    through the leader); the leader killed mid-job, the other takes over and the output and log survive."""
    cp, instance = k8s_control_plane, "r-" + uuid.uuid4().hex[:8]
    url = postgres.create_db("replicas_k8s")
    config = {"Controller": {"reconcile_interval_s": 0.5},
              "KubernetesExecutor": {"kubeconfig": str(cp.kubeconfig), "instance": instance,
                                     "service_url": "http://aistack.invalid/api/",
                                     "extra_pod_annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "600s",
                                                               "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "600s"}},
              "SliceRenderer": {"backend": "time-slice"}}
    args = ("--executor=job_runner.executors.kubernetes.KubernetesExecutor",)
    a = replica(tmp_path, "a", url, deployment, args, config).start()
    b = replica(tmp_path, "b", url, deployment, args, config).start()
    try:
        leader, follower = leader_and_follower(a, b)
        r = leader.session().post(leader.api + "jobs", json={
            "notebook": json.loads(notebook("greeting = 'hello'", "print(greeting * 2)")), "profile": "t4-quarter",
            "tenant": "team-a", "parameters": {"greeting": "bonjour"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = wait_for(lambda: (lambda j: j if j["state"] == "running" else None)(
            leader.session().get(f"{leader.api}jobs/{job_id}").json()), 60, what="the job to run")
        pods = cp.kubectl_json("get", "pods", "-A", "-l", f"{INSTANCE_LABEL}={instance}")["items"]
        pod = run_pod(follower.api, job_id, job["attempt"], tmp_path)  # the pod reaches the non-leader
        assert pod.returncode == 0, pod.stdout + pod.stderr

        def output_and_log(svc):
            s = svc.session()
            out = s.get(f"{svc.api}jobs/{job_id}/output")
            log = s.get(f"{svc.api}jobs/{job_id}/logs")
            part = s.get(f"{svc.api}jobs/{job_id}/output", headers={"Range": "bytes=10-109"})
            assert out.status_code == 200 and log.status_code == 200 and part.status_code == 206, \
                (out.text[:300], log.text[:300], part.text[:300])
            assert part.content == out.content[10:110]  # a range read from the stored chunks
            return out.content, log.text

        assert leader.session().get(f"{leader.api}jobs/{job_id}").json()["state"] == "running"  # mid-job
        out, log = output_and_log(leader)
        assert b"bonjourbonjour" in out and "bonjourbonjour" in log
        # The progress the pod sent to the follower, read by the leader's poll (from the store) into the job.
        wait_for(lambda: ((leader.session().get(f"{leader.api}jobs/{job_id}").json().get("progress") or {})
                          .get("cells_total") or 0) >= 2, 20, what="the leader to read the pod's progress")
        leader.kill()  # SIGKILL mid-job: the Kubernetes Job goes on running
        wait_for(lambda: follower.health()["leader"], 20, what="the other replica to lead")
        assert output_and_log(follower) == (out, log)
        # The new leader adopted the run (one Job, not a second one) and the job is still running.
        jobs = cp.kubectl_json("get", "jobs", "-A", "-l", f"{INSTANCE_LABEL}={instance}")["items"]
        assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
        ticks = follower.health()["ticks"]  # ten passes of the new leader: it must not fail the job as lost
        wait_for(lambda: follower.health()["ticks"] >= ticks + 10, 30, what="ten passes of the new leader")
        assert follower.session().get(f"{follower.api}jobs/{job_id}").json()["state"] == "running"
    finally:
        for svc in (a, b):
            svc.stop()
        cp.kubectl("delete", "jobs", "-A", "-l", f"{INSTANCE_LABEL}={instance}", "--wait=false", check=False)
