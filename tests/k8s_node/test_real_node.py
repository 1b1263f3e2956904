"""Real pods on a real node: the job image, a notebook job through the KubernetesExecutor, OOMKilled.

The node is a real kubelet with containerd and runc (tests/k8s/node.py) beside kwok's fake GPU nodes; the
image is built from this checkout (scripts/images.sh) and imported, never pulled. Only the GPUs stay fake.
"""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import yaml

from job_runner.executors.k8s_manifest import JOB_ID_LABEL
from tests.job_service.helpers import ServiceProcess, free_port, make_notebook
from tests.k8s.controlplane import read_versions
from tests.k8s_node.restart import wait

pytestmark = pytest.mark.k8s

TENANT = "team-a"
FIGURES: dict[str, float] = {}  # pod create -> Succeeded (s, API timestamps) of this session's runs
NAMESPACE = "aistack-team-a"  # KubernetesExecutor.namespace_template's for the tenant


def pod_seconds(pod: dict) -> float:
    """creationTimestamp -> the container's finishedAt, in seconds (the API's 1 s resolution)."""
    import datetime

    def ts(text):
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")

    finished = pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    return (ts(finished) - ts(pod["metadata"]["creationTimestamp"])).total_seconds()


def test_a_real_pod_of_the_job_image_runs_beside_the_fake_gpu_nodes(k8s_control_plane, real_node, images):
    """Closes: no container ever ran (kwok fakes every pod) and there was no image: a pod of the job image,
    built from this checkout and imported without a registry, runs on a real kubelet as a non-root user
    without a service-account token, its log comes through the API server, and kwok's GPU nodes stay Ready."""
    cp = k8s_control_plane
    ns = f"node-{uuid.uuid4().hex[:8]}"
    cp.create_namespace(ns)
    probe = ("import os, papermill, ipykernel, job_runner.pod; "
             "print('uid', os.getuid(), 'gid', os.getgid(), 'papermill', papermill.__version__); "
             "print('token', os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'))")
    cp.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "nodeSelector": {"kubernetes.io/hostname": real_node.name},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100},
        "containers": [{"name": "probe", "image": images["AISTACK_JOB_IMAGE"], "imagePullPolicy": "Never",
                        "command": ["python", "-c", probe],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}})
    pod = wait(lambda: (p := cp.kubectl_json("get", "pod", "probe", "-n", ns))["status"].get("phase")
               in ("Succeeded", "Failed") and p, 120, "the probe pod to end")
    assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"], indent=1)
    assert pod["spec"]["nodeName"] == real_node.name
    log = cp.kubectl("logs", "probe", "-n", ns).stdout  # API server -> the kubelet's TLS endpoint
    assert "uid 1000 gid 100 papermill" in log and "token False" in log, log
    nodes = {n["metadata"]["name"]: n for n in cp.kubectl_json("get", "nodes")["items"]}
    ready = {name for name, n in nodes.items()
             if {c["type"]: c["status"] for c in n["status"]["conditions"]}.get("Ready") == "True"}
    assert {real_node.name, "kwok-a100-0", "kwok-a100-mig-0", "kwok-t4-shared-0", "kwok-a30-hami-0"} <= ready
    info = nodes[real_node.name]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == read_versions()["K8S_VERSION"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


@pytest.fixture(scope="module")
def k8s_service(tmp_path_factory, k8s_control_plane, real_node, images):
    """The real aistack service with the KubernetesExecutor: Jobs in the tenant's namespace on the real node
    (the inventory names it, so the slice pins the pod there), pods reporting to the service on the node IP."""
    cp = k8s_control_plane
    cp.create_namespace(NAMESPACE)
    d = tmp_path_factory.mktemp("k8s-service")
    port = free_port()
    deployment = {
        "tenants": [{"name": TENANT}],
        "profiles": [
            {"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 512}},
            {"slug": "small", "display_name": "Small", "request": {"kind": "cpu", "cpu_milli": 250, "memory_mib": 160}},
        ],
        "inventory": [{"name": real_node.name, "cpu_milli": 2000, "memory_mib": 4096}],
    }
    (d / "deploy.yaml").write_text(yaml.safe_dump(deployment))
    data = d / "data"
    db = f"sqlite:///{data / 'aistack.sqlite'}"
    config = {"KubernetesExecutor": {
        "kubeconfig": str(cp.kubeconfig), "image": images["AISTACK_JOB_IMAGE"], "image_pull_policy": "Never",
        "service_url": f"http://{real_node.ip}:{port}/services/aistack/api/", "create_namespaces": False,
        "pending_timeout_s": 120.0}}
    # 0.0.0.0: pods reach the service through their bridge's gateway at the node IP.
    svc = ServiceProcess(str(data), db, str(d / "deploy.yaml"), port=port, config=config, extra_args=(
        "--executor=job_runner.executors.kubernetes.KubernetesExecutor", "--ip=0.0.0.0",
        "--AIStackService.validate_kernels=False"))
    svc.start(timeout=60)
    try:
        yield {"svc": svc, "db": db, "data": data}
    finally:
        svc.stop()
        # The control plane is the session's: later folders must not find this folder's Jobs.
        cp.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=90s", check=False, timeout=120)


def submit(db_url: str, notebook: dict, profile: str, request: dict, parameters: dict | None = None) -> int:
    """A job row as POST jobs writes it (the service's controller admits it and starts its Kubernetes Job)."""
    from job_runner.db import Job, open_database

    db = open_database(db_url)
    try:
        with db.session() as s:
            row = Job(name=f"real-{profile}", user="alice", tenant=TENANT, profile=profile,
                      notebook=json.dumps(notebook), parameters=parameters or {}, kernel_name="python3",
                      request=request)
            s.add(row)
            s.flush()
            return row.id
    finally:
        db.engine.dispose()


def job_row(db_url: str, job_id: int) -> dict:
    from job_runner.db import Job, open_database

    db = open_database(db_url)
    try:
        with db.session() as s:
            row = s.get(Job, job_id)
            return {"state": row.state, "failure": row.failure, "attempt": row.attempt}
    finally:
        db.engine.dispose()


def run_job(cp, service, notebook, profile, request, parameters=None, timeout=240):
    """Submit, follow the pod (polling every 0.2 s) and wait for the job's end. Returns (row, pod, timings)."""
    job_id = submit(service["db"], notebook, profile, request, parameters)
    seen, phases, last = None, {}, {}

    def final():
        nonlocal seen
        pods = cp.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"{JOB_ID_LABEL}={job_id}")["items"]
        if pods:
            seen = seen or time.monotonic()
            phases.setdefault(pods[-1]["status"].get("phase"), time.monotonic())
            last.update({p["metadata"]["name"]: p for p in pods})
        row = job_row(service["db"], job_id)
        return row if row["state"] in ("succeeded", "failed", "cancelled") else None

    row = wait(final, timeout, f"job {job_id} to end (service log: {service['svc'].log_path})")
    # the executor may delete a failed job's Job (and its pod) right after recording the end: judge the
    # pods by what was seen while it ran, plus what is still there now
    pods = cp.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"{JOB_ID_LABEL}={job_id}")["items"]
    last.update({p["metadata"]["name"]: p for p in pods})
    assert len(last) == 1, sorted(last)
    timings = {"seen_to_" + k.lower(): round(v - seen, 2) for k, v in phases.items() if seen}
    return job_id, row, next(iter(last.values())), timings


def test_a_notebook_job_runs_in_a_real_pod_and_sends_its_output_back(k8s_control_plane, real_node, k8s_service):
    """Closes: "Run as job" never ran in a pod: through the KubernetesExecutor a batch/v1 Job's real pod
    runs papermill on the real node, as non-root without a service-account token, sends its output and log
    back to the service, and its container log comes through the API server. Prints pod create -> Succeeded."""
    cp = k8s_control_plane
    nb = make_notebook("import os\nprint('in the pod as', os.getuid(), greeting * 2)", params="greeting = 'hello'")
    job_id, row, pod, timings = run_job(cp, k8s_service, nb, "cpu",
                                        {"kind": "cpu", "cpu_milli": 500, "memory_mib": 512}, {"greeting": "bonjour"})
    assert row["state"] == "succeeded", (row, k8s_service["svc"].log_tail())
    assert pod["spec"]["nodeName"] == real_node.name and pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not [v for v in pod["spec"].get("volumes", []) if v["name"].startswith("kube-api-access")]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    attempt = k8s_service["data"] / "jobs" / str(job_id) / f"attempt-{row['attempt']}"
    out = json.loads((attempt / "output.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert "in the pod as 1000 bonjourbonjour" in printed  # the parameter, injected by papermill in the pod
    assert "bonjourbonjour" in (k8s_service["data"] / "jobs" / str(job_id) / "job.log").read_text()
    log = cp.kubectl("logs", pod["metadata"]["name"], "-n", NAMESPACE).stdout  # through the API server
    assert "bonjourbonjour" in log, log
    FIGURES["executor"] = pod_seconds(pod)
    print(f"\nnotebook job pod create -> Succeeded: {FIGURES['executor']:.0f} s; observed (0.2 s polls) {timings}")


def test_the_same_notebook_with_papermill_directly_in_the_same_image(k8s_control_plane, real_node, images):
    """Closes: no figure for the job system's overhead in a real pod: the same notebook run by papermill
    directly in a pod of the same image and size, for the ratio executor / direct (issue 11: <= 1.3)."""
    cp = k8s_control_plane
    ns = f"direct-{uuid.uuid4().hex[:8]}"
    cp.create_namespace(ns)
    nb = make_notebook("import os\nprint('in the pod as', os.getuid(), greeting * 2)", params="greeting = 'hello'")
    script = (f"import json, papermill; open('/tmp/in.ipynb', 'w').write(json.dumps({nb!r})); "
              "papermill.execute_notebook('/tmp/in.ipynb', '/tmp/out.ipynb', parameters={'greeting': 'bonjour'}, "
              "kernel_name='python3', progress_bar=False); print(open('/tmp/out.ipynb').read())")
    size = {"cpu": "500m", "memory": "512Mi"}  # the "cpu" profile of the executor's job
    cp.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "direct", "namespace": ns}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "nodeSelector": {"kubernetes.io/hostname": real_node.name},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100},
        "containers": [{"name": "direct", "image": images["AISTACK_JOB_IMAGE"], "imagePullPolicy": "Never",
                        "command": ["python", "-c", script], "resources": {"requests": size, "limits": size}}]}})
    pod = wait(lambda: (p := cp.kubectl_json("get", "pod", "direct", "-n", ns))["status"].get("phase")
               in ("Succeeded", "Failed") and p, 120, "the direct papermill pod to end")
    assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"], indent=1)
    assert "in the pod as 1000 bonjourbonjour" in cp.kubectl("logs", "direct", "-n", ns).stdout
    direct = pod_seconds(pod)
    ratio = f"{FIGURES['executor'] / direct:.2f}" if "executor" in FIGURES and direct else "n/a"
    print(f"\npapermill directly: pod create -> Succeeded {direct:.0f} s; executor job {FIGURES.get('executor')} s;"
          f" ratio {ratio}")
    cp.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_notebook_over_its_memory_limit_comes_back_oomkilled(k8s_control_plane, real_node, k8s_service):
    """Closes: OOMKilled was only ever faked: a notebook that allocates 1 GiB under a 160 MiB limit is killed
    by the kernel's OOM killer in a real cgroup, and the job fails as the local path says, 'out of memory'
    (class kernel_died, reason OOMKilled)."""
    cp = k8s_control_plane
    nb = make_notebook("blob = b'x' * (1024 ** 3)\nprint(len(blob))", params="n = 1")
    job_id, row, pod, _ = run_job(cp, k8s_service, nb, "small", {"kind": "cpu", "cpu_milli": 250, "memory_mib": 160})
    assert row["state"] == "failed", row
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "160Mi"
    fail = row["failure"]
    assert fail["class"] == "kernel_died" and fail["reason"] == "OOMKilled", fail
    assert "out of memory" in fail["message"], fail


TRAIN_IN_POD = """
import time
from job_runner import report
for epoch in range(1, epochs + 1):
    time.sleep(1.0)
    report(step=epoch, accuracy=1 - lr / epoch)
"""


def test_a_pruned_trial_in_a_real_pod_ends_itself_at_the_stop_marker(k8s_control_plane, real_node, k8s_service):
    """Closes (issue 13): a pod never saw the stop marker (no run folder of it beside the service), so every
    pruned pod trial was cancelled outright (its Job deleted, its last epoch lost). ASHA over real pods on the
    real node: each pruned trial learns of its marker from the service's answer to its pod's report, ends
    itself at its next report() and its pod exits with the marker's reason (class "cancelled", stopped_itself),
    never more than ``parallelism`` trials at once."""
    s, api = k8s_service["svc"].session(), k8s_service["svc"].api
    r = s.post(api + "experiments", json={
        "notebook": make_notebook(TRAIN_IN_POD, params="lr = 0.1\nepochs = 3"), "profile": "cpu",
        "tenant": TENANT, "name": "in-pods", "space": {"lr": [0.1, 0.4, 0.7, 0.9]},
        "objective": {"metric": "accuracy", "mode": "max"}, "strategy": "asha", "parallelism": 2,
        "budget": {"parameter": "epochs", "max": 9}, "pruner": {"min_resource": 1, "reduction_factor": 3},
        "seed": 1})
    assert r.status_code == 201, r.text
    eid, most = r.json()["id"], 0

    def ended():
        nonlocal most
        e = s.get(api + f"experiments/{eid}").json()
        most = max(most, sum(1 for t in e["trials"] if t["job_state"] in ("admitted", "running")))
        return e if e["state"] != "running" else None
    e = wait(ended, 400, f"experiment {eid} to end (service log: {k8s_service['svc'].log_path})")
    assert e["state"] == "completed", (e, k8s_service["svc"].log_tail())
    assert most <= 2, f"{most} trials held slots at once (parallelism 2)"
    pruned = [t for t in e["trials"] if t["state"] == "pruned"]
    assert pruned, [(t["parameters"], t["state"], t["last_step"]) for t in e["trials"]]
    for t in pruned:
        fail = t["failure"] or {}
        assert fail.get("class") == "cancelled" and fail.get("stopped_itself") is True, t
        assert re.search(r"pruned by the experiment's rule at step \d+", fail.get("message") or ""), t
        assert t["last_step"] < 9, t
        log = s.get(api + f"jobs/{t['job_id']}/logs").text
        assert "stopped itself at the experiment's stop marker" in log, log[-3000:]
    assert [t for t in e["trials"] if t["state"] == "completed" and t["last_step"] == 9], e["trials"]
