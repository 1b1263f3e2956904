"""Restart from checkpoint on the real node: one harness for the test (tests/k8s_node/test_checkpoint_restart.py)
and the benchmark (benchmarks/k8s_checkpoint_restart.py).

The real ``aistack`` service with the KubernetesExecutor, its jobs' checkpoint folders on a claim of the
tenant (``checkpoint_claim``, created by the executor, bound to a PersistentVolume on a host folder: the
test cluster has no provisioner and one real node, so "shared storage" is a folder of this machine that
outlives the pod, as an NFS export would on a real cluster). A notebook saves a checkpoint after each
step and resumes from it; ``lose_pod`` deletes (or evicts) its pod mid-run and measures loss -> the new
attempt's pod Running -> the notebook resumed, from the API's objects polled every 0.2 s and the
notebook's own clock (one machine: one clock).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import yaml

from job_runner.executors.k8s_manifest import ATTEMPT_LABEL, INSTANCE_LABEL, JOB_ID_LABEL
from tests.job_service.helpers import ServiceProcess, free_port, make_notebook

TENANT = "team-ckpt"
NAMESPACE = "aistack-team-ckpt"  # namespace_template's for the tenant
INSTANCE = "aistack-ckpt"  # its own instance: this service's reconcile never touches another test's Jobs
CLAIM = "aistack-checkpoints"
STORAGE_CLASS = "aistack-test-checkpoints"  # no StorageClass object: the claim binds to our volume by name
PROFILE = {"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 512}}

# A training-shaped notebook: each step's work, then an atomic checkpoint; at start it resumes from the
# checkpoint if there is one. steps.log (in the checkpoint folder) records who did what when:
# "<attempt> resume <first step> <time>" and "<attempt> step <n> <time>".
CHECKPOINT_NOTEBOOK = """\
import json, os, time
ck = os.environ["AISTACK_CHECKPOINT_DIR"]
attempt = os.environ["AISTACK_JOB_ATTEMPT"]
state = os.path.join(ck, "state.json")
start = json.load(open(state))["step"] + 1 if os.path.exists(state) else 0
with open(os.path.join(ck, "steps.log"), "a") as log:
    log.write(f"{attempt} resume {start} {time.time()}\\n")
print(f"attempt {attempt}: resumed from checkpoint at step {start}" if start else f"attempt {attempt}: fresh start")
for step in range(start, steps):
    time.sleep(step_s)  # the work of one step
    with open(state + ".tmp", "w") as f:
        json.dump({"step": step}, f)
    os.replace(state + ".tmp", state)
    with open(os.path.join(ck, "steps.log"), "a") as log:
        log.write(f"{attempt} step {step} {time.time()}\\n")
print("finished", steps, "steps")
"""


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class RestartHarness:
    """``inventory``: the core's nodes (default: ``node`` with 2 CPUs); ``controller``: Controller traits."""

    def __init__(self, cp, node, images: dict, workdir: Path, inventory: list | None = None,
                 controller: dict | None = None):
        self.cp, self.node, self.images, self.workdir = cp, node, images, Path(workdir)
        self.inventory = inventory or [{"name": node.name, "cpu_milli": 2000, "memory_mib": 4096}]
        self.controller = controller or {}
        self.store = self.workdir / "checkpoint-volume"  # the volume's root on this machine
        self.pv = f"{NAMESPACE}-{uuid.uuid4().hex[:8]}"
        self.svc = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "RestartHarness":
        cp = self.cp
        cp.create_namespace(NAMESPACE)
        self.store.mkdir(parents=True)
        # What an NFS export for uid 1000 / gid 100 would be: the kubelet creates each job's subPath folder
        # with this mode, and the setgid bit gives it group 100, so the job's user can write it.
        os.chown(self.store, 1000, 100)
        os.chmod(self.store, 0o2775)
        cp.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": self.pv}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": NAMESPACE, "name": CLAIM},  # ours only, never another test's claim
            "hostPath": {"path": str(self.store), "type": "Directory"}}})
        port = free_port()
        deployment = {"tenants": [{"name": TENANT}], "profiles": [PROFILE], "inventory": self.inventory}
        (self.workdir / "deploy.yaml").write_text(yaml.safe_dump(deployment))
        self.data = self.workdir / "data"
        self.db_url = f"sqlite:///{self.data / 'aistack.sqlite'}"
        config = {"KubernetesExecutor": {
            "kubeconfig": str(cp.kubeconfig), "image": self.images["AISTACK_JOB_IMAGE"],
            "image_pull_policy": "Never", "service_url": f"http://{self.node.ip}:{port}/services/aistack/api/",
            "create_namespaces": False, "pending_timeout_s": 120.0, "instance": INSTANCE,
            "reconcile_namespaces": [NAMESPACE],
            "checkpoint_claim": CLAIM, "checkpoint_storage_class": STORAGE_CLASS, "checkpoint_size_gib": 1.0}}
        if self.controller:
            config["Controller"] = dict(self.controller)
        self.svc = ServiceProcess(str(self.data), self.db_url, str(self.workdir / "deploy.yaml"), port=port,
                                  config=config, extra_args=(
                                      "--executor=job_runner.executors.kubernetes.KubernetesExecutor",
                                      "--ip=0.0.0.0", "--AIStackService.validate_kernels=False"))
        self.svc.start(timeout=60)
        return self

    def stop(self) -> None:
        if self.svc is not None:
            self.svc.stop()
        # The control plane is the session's: later tests must not find this harness's Jobs or volume. It runs
        # no pvc/pv-protection controller: their finalizers are taken off, else the claim (and with it the
        # namespace) would stay Terminating.
        for kind, name, where in (("pvc", CLAIM, ["-n", NAMESPACE]), ("pv", self.pv, [])):
            self.cp.kubectl("delete", kind, *where, name, "--wait=false", check=False)
            self.cp.kubectl("patch", kind, *where, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                            check=False)
        self.cp.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=90s", check=False, timeout=120)

    # -- jobs --------------------------------------------------------------------------------------
    def submit(self, steps: int, step_s: float, max_retries: int = 1) -> int:
        """A job row as POST jobs writes it (the service's controller admits it and starts its Job)."""
        from job_runner.db import Job, open_database

        nb = make_notebook(CHECKPOINT_NOTEBOOK, params="steps = 3\nstep_s = 1.0")
        db = open_database(self.db_url)
        try:
            with db.session() as s:
                row = Job(name="checkpointed", user="alice", tenant=TENANT, profile="cpu",
                          notebook=json.dumps(nb), parameters={"steps": steps, "step_s": step_s},
                          kernel_name="python3", request=PROFILE["request"], max_retries=max_retries)
                s.add(row)
                s.flush()
                return row.id
        finally:
            db.engine.dispose()

    def row(self, job_id: int) -> dict:
        from job_runner.db import Job, open_database

        db = open_database(self.db_url)
        try:
            with db.session() as s:
                row = s.get(Job, job_id)
                return {"state": row.state, "failure": row.failure, "attempt": row.attempt,
                        "events": [(e.from_state, e.to_state, e.attempt, e.message) for e in row.events]}
        finally:
            db.engine.dispose()

    def pods(self, job_id: int) -> list[dict]:
        return self.cp.kubectl_json("get", "pods", "-n", NAMESPACE, "-l",
                                   f"{JOB_ID_LABEL}={job_id},{INSTANCE_LABEL}={INSTANCE}")["items"]

    def checkpoint_folder(self, job_id: int) -> Path:
        """The job's folder on the volume (the executor's subPath), as this machine sees it."""
        return self.store / INSTANCE / "jobs" / str(job_id)

    def steps_log(self, job_id: int) -> list[tuple[int, str, int, float]]:
        try:
            text = (self.checkpoint_folder(job_id) / "steps.log").read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            attempt, kind, n, at = line.split()
            out.append((int(attempt), kind, int(n), float(at)))
        return out

    def output_text(self, job_id: int, attempt: int) -> str:
        out = json.loads((self.data / "jobs" / str(job_id) / f"attempt-{attempt}" / "output.ipynb").read_text())
        return "".join("".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))

    def wait_running(self, job_id: int, attempt: int, timeout: float = 180) -> dict:
        def running():
            for p in self.pods(job_id):
                if (p["metadata"]["labels"].get(ATTEMPT_LABEL) == str(attempt)
                        and p["status"].get("phase") == "Running"):
                    return p
            return None
        return wait(running, timeout, f"the pod of attempt {attempt} of job {job_id} to run "
                                      f"(service log: {self.svc.log_path})")

    def wait_end(self, job_id: int, timeout: float = 300) -> dict:
        return wait(lambda: (r := self.row(job_id))["state"] in ("succeeded", "failed", "cancelled") and r,
                    timeout, f"job {job_id} to end (service log: {self.svc.log_path})")

    def lose_pod(self, job_id: int, after_step: int, how: str = "delete", timeout: float = 180) -> dict:
        """Once the notebook has saved the checkpoint of ``after_step``, lose its pod (``delete``: as
        kubectl delete pod; ``evict``: the eviction API, as kubectl drain does) and follow the job until
        attempt 2's pod runs and its notebook resumed. Returns the timings (s) and what was seen."""
        wait(lambda: any(k == "step" and n >= after_step for _, k, n, _ in self.steps_log(job_id)), timeout,
             f"job {job_id} to checkpoint step {after_step} (service log: {self.svc.log_path})")
        old = [p for p in self.pods(job_id) if p["status"].get("phase") == "Running"]
        assert len(old) == 1, [p["metadata"]["name"] for p in old]
        old_name = old[0]["metadata"]["name"]
        lost_at = time.time()
        if how == "delete":
            self.cp.kubectl("delete", "pod", old_name, "-n", NAMESPACE, "--wait=false")
        else:
            eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": old_name, "namespace": NAMESPACE}}
            self.cp.kubectl("create", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{old_name}/eviction",
                            "-f", "-", input=json.dumps(eviction))
        return self._follow(job_id, old_name, lost_at, timeout)

    def lose_node(self, job_id: int, after_step: int, node, timeout: float = 300) -> dict:
        """Once the checkpoint of ``after_step`` is saved, the node that runs the job's pod dies (``RealNode.kill``:
        nothing is told to the API server). When the node lifecycle controller has marked it Unknown, an operator
        says it is dead: the ``node.kubernetes.io/out-of-service`` taint (Kubernetes' non-graceful node shutdown),
        after which the taint eviction and pod GC remove its pods. Follows the job until attempt 2 runs and
        resumed. Returns the timings (s), also loss -> node Unknown and loss -> tainted."""
        wait(lambda: any(k == "step" and n >= after_step for _, k, n, _ in self.steps_log(job_id)), timeout,
             f"job {job_id} to checkpoint step {after_step} (service log: {self.svc.log_path})")
        old = [p for p in self.pods(job_id) if p["status"].get("phase") == "Running"]
        assert len(old) == 1 and old[0]["spec"]["nodeName"] == node.name, \
            [(p["metadata"]["name"], p["spec"].get("nodeName")) for p in old]
        lost_at = time.time()
        node.kill()

        def unknown():
            got = self.cp.kubectl_json("get", "node", node.name)
            return any(c["type"] == "Ready" and c["status"] != "True" for c in got["status"].get("conditions", []))
        wait(unknown, 180, f"node {node.name} to be marked not Ready", interval=0.5)
        unknown_at = time.time()
        self.cp.kubectl("taint", "node", node.name, "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
        tainted_at = time.time()
        out = self._follow(job_id, old[0]["metadata"]["name"], lost_at, timeout)
        return {**out, "loss_to_node_unknown_s": round(unknown_at - lost_at, 2),
                "loss_to_out_of_service_s": round(tainted_at - lost_at, 2),
                "out_of_service_to_running_s": round(out["loss_to_running_s"] - (tainted_at - lost_at), 2)}

    def _follow(self, job_id: int, old_name: str, lost_at: float, timeout: float) -> dict:
        """After the loss of pod ``old_name``: until attempt 2's pod runs and its notebook resumed."""
        seen: dict = {"rows": [], "old_gone_at": None, "both_running": False}

        def follow():
            pods = {p["metadata"]["name"]: p for p in self.pods(job_id)}
            now = time.time()
            old_pod = pods.get(old_name)
            if seen["old_gone_at"] is None and (old_pod is None or old_pod["status"].get("phase") in ("Failed", "Succeeded")):
                seen["old_gone_at"] = now
            new = [p for n, p in pods.items() if n != old_name and p["status"].get("phase") == "Running"]
            if new and old_pod is not None and old_pod["status"].get("phase") == "Running":
                seen["both_running"] = True
            r = self.row(job_id)
            seen["rows"].append((r["state"], r["attempt"], (r["failure"] or {}).get("reason")))
            return new[0] if new and new[0]["metadata"]["labels"].get(ATTEMPT_LABEL) == "2" else None

        new_pod = wait(follow, timeout, f"attempt 2 of job {job_id} to run (service log: {self.svc.log_path})")
        running_at = time.time()
        resumed = wait(lambda: [e for e in self.steps_log(job_id) if e[0] == 2 and e[1] == "resume"], timeout,
                       "attempt 2's notebook to resume")[0]
        import datetime

        started = new_pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        started_api = datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        return {
            "old_pod": old_name, "new_pod": new_pod["metadata"]["name"], "new_node": new_pod["spec"]["nodeName"],
            "loss_to_old_pod_stopped_s": round(seen["old_gone_at"] - lost_at, 2) if seen["old_gone_at"] else None,
            "loss_to_running_s": round(running_at - lost_at, 2),
            "loss_to_container_started_api_s": round(started_api - lost_at, 1),  # 1 s resolution
            "loss_to_resumed_s": round(resumed[3] - lost_at, 2),
            "resumed_at_step": resumed[2], "both_running": seen["both_running"], "rows": seen["rows"],
        }

    def cold_start(self, steps: int = 2, step_s: float = 0.5, timeout: float = 180) -> dict:
        """The baseline: a fresh job's submit -> its pod Running -> its notebook started (same queue,
        executor, node and image), then waited to its end."""
        submitted = time.time()
        job_id = self.submit(steps, step_s, max_retries=0)
        self.wait_running(job_id, 1, timeout)
        running_at = time.time()
        started = wait(lambda: [e for e in self.steps_log(job_id) if e[1] == "resume"], timeout,
                       "the notebook to start")[0]
        row = self.wait_end(job_id, timeout)
        assert row["state"] == "succeeded", (row, self.svc.log_tail())
        return {"job": job_id, "submit_to_running_s": round(running_at - submitted, 2),
                "submit_to_notebook_started_s": round(started[3] - submitted, 2)}
