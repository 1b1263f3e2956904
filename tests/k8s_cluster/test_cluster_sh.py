"""`bash scripts/cluster.sh up|down`: the chart installed on a real one-machine cluster, used, and removed.

Closes: "cluster.sh up|down|status: control plane, real node, kwok GPU nodes, images imported, the chart
installed with PostgreSQL, the hub reachable from the host; up prints AISTACK_URL / AISTACK_ADMIN_TOKEN;
down leaves the host as it found it". Nothing is simulated but the GPU nodes (kwok): the hub, proxy and
service run in real pods of the platform image on the real node. Fails (never skips) when root, the
kubelet, containerd, PostgreSQL or the images' tools are missing: cluster.sh says which.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.k8s.hoststate import SYSCTLS

REPO = Path(__file__).resolve().parents[2]
CLUSTER = ["bash", str(REPO / "scripts" / "cluster.sh")]
pytestmark = pytest.mark.k8s


def host_snapshot() -> dict:
    """What the cluster may change on the host and must give back: sysctls, links, mounts, listeners."""
    sysctls = {name: Path("/proc/sys", name.replace(".", "/")).read_text().strip() for name in SYSCTLS}
    links = sorted(link["ifname"] for link in json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout))
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f)
    listening = subprocess.run(["ss", "-Htln"], capture_output=True, text=True).stdout
    ports = sorted({int(line.split()[3].rsplit(":", 1)[1]) for line in listening.splitlines() if line.strip()}
                   & {8000, 8001, 8081, 10101})
    procs = sorted(p for p in ("kubelet", "containerd", "kube-apiserver", "etcd", "kwok")
                   if subprocess.run(["pgrep", "-x", p], capture_output=True).returncode == 0)
    return {"sysctls": sysctls, "links": links, "mounts": mounts, "ports": ports, "processes": procs}


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if data else {}
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode()[:2000]}


def start_a_server(url: str, token: str, up_stdout: str) -> float:
    """alice (tenant default) starts a server with the 'small' profile: KubeGPUSpawner asks the service for the
    slice, the scheduler places it on the real node, and a real pod of the job image (JupyterLab) answers
    through the chart's proxy. Returns spawn-to-ready seconds; stops the server."""
    hub = url + "hub/api"
    assert call("POST", f"{hub}/users/alice", token)[0] in (201, 409)
    assert call("POST", f"{hub}/groups/default/users", token, {"users": ["alice"]})[0] == 200
    t0 = time.monotonic()
    status, body = call("POST", f"{hub}/users/alice/server", token, {"tenant": "default", "profile": "small"})
    assert status in (201, 202), (status, body)
    deadline = time.monotonic() + 240
    while True:
        status, user = call("GET", f"{hub}/users/alice", token)
        server = (user.get("servers") or {}).get("", {})
        if server.get("ready"):
            break
        assert server or user.get("pending"), f"the server stopped while starting: {user}"
        assert time.monotonic() < deadline, f"alice's server not ready in 240 s: {user}"
        time.sleep(1)
    ready = time.monotonic() - t0
    status, body = get(url + "user/alice/api/status", token)
    assert status == 200 and b"started" in body, (status, body[:500])
    kubeconfig = next(line.split("=", 1)[1] for line in up_stdout.splitlines() if line.startswith("KUBECONFIG="))
    from tests.k8s.controlplane import binary_paths
    pods = json.loads(subprocess.run([binary_paths()["kubectl"], "--kubeconfig", kubeconfig, "get", "pods", "-A",
                                      "-l", "component=singleuser-server", "-o", "json"],
                                     capture_output=True, text=True, check=True).stdout)["items"]
    assert [(p["metadata"]["namespace"], p["spec"]["nodeName"], p["status"]["phase"]) for p in pods] == [
        ("aistack-default", "aistack-node-0", "Running")], pods
    assert call("DELETE", f"{hub}/users/alice/server", token)[0] in (202, 204)
    return ready


JOB_SECONDS = 25
CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")


def run_as_job_in_chromium(url: str, admin_token: str) -> dict:
    """Issue 11's test "in Chromium against the hub inside the cluster: sign in, spawn a server (a real pod),
    Run as job, see it succeed with its output": the lab extension's browser script
    (tests/labextension/browser/run_as_job.js, its core flow) against the chart's proxy. carol signs up on
    the hub's page, the admin approves her; her server is a real pod; the job is a batch/v1 Job's real pod."""
    import requests

    from tests.hub.launcher import PASSWORD
    from tests.labextension.conftest import params_notebook

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test` (45-chromium.sh)"

    def form_post(s, page, data):
        s.get(url + page).raise_for_status()
        xsrf = s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf") or ""
        r = s.post(url + page, data={**data, "_xsrf": xsrf}, timeout=30)
        r.raise_for_status()
        return r

    for name in ("admin", "carol"):
        form_post(requests.Session(), "hub/signup", {"username": name, "signup_password": PASSWORD,
                                                     "signup_password_confirmation": PASSWORD})
    admin = requests.Session()
    form_post(admin, "hub/login", {"username": "admin", "password": PASSWORD})
    assert admin.get(url + "hub/authorize/carol", timeout=30).status_code == 200
    hub = url + "hub/api"
    assert call("POST", f"{hub}/users/carol", admin_token)[0] in (201, 409)
    assert call("POST", f"{hub}/groups/default/users", admin_token, {"users": ["carol"]})[0] == 200
    status, tok = call("POST", f"{hub}/users/carol/tokens", admin_token, {"note": "browser test"})
    assert status == 201, (status, tok)
    carol = tok["token"]
    status, body = call("POST", f"{hub}/users/carol/server", carol, {"tenant": "default", "profile": "small"})
    assert status in (201, 202), (status, body)
    deadline = time.monotonic() + 240
    while not ((call("GET", f"{hub}/users/carol", admin_token)[1].get("servers") or {}).get("", {}).get("ready")):
        assert time.monotonic() < deadline, "carol's server not ready in 240 s"
        time.sleep(1)
    r = requests.put(url + "user/carol/api/contents/demo.ipynb", headers={"Authorization": f"token {carol}"},
                     json={"type": "notebook", "format": "json", "content": params_notebook()}, timeout=30)
    assert r.status_code in (200, 201), r.text
    shots = REPO / "test-artifacts" / "k8s_cluster" / "browser"
    shutil.rmtree(shots, ignore_errors=True)
    env = dict(os.environ, HUB_URL=url, USER_NAME="carol", PASSWORD=PASSWORD, ARTIFACTS=str(shots),
               CHROMIUM=CHROMIUM, PROFILE="small", CORE_ONLY="1", STEP_TIMEOUT_MS="120000")
    out = subprocess.run(["node", str(REPO / "tests" / "labextension" / "browser" / "run_as_job.js")], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    res = json.loads(lines[-1])
    assert not res.get("error"), f"{res['error']}\nsteps done: {res.get('steps')}\n{out.stderr[-3000:]}"
    assert res["finalState"] == "succeeded" and res["outputHasEffect"] and res["logShown"], res
    assert call("DELETE", f"{hub}/users/carol/server", admin_token)[0] in (202, 204)
    return res


def sleeper_notebook(tag: str) -> dict:
    """A notebook that runs ~JOB_SECONDS, printing as it goes: long enough that an upgrade lands mid-run."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        f"import time\nfor i in range({JOB_SECONDS}):\n    time.sleep(1)\nprint('done {tag}')")]
    return json.loads(nbformat.writes(nb))


def jobs_survive_a_helm_upgrade(url: str, admin_token: str, up_stdout: str, state: Path) -> dict:
    """Issue 11, "helm upgrade with jobs running loses none": alice's three jobs run in real pods on the
    real node; mid-run the release is upgraded with a changed service config, which re-creates the hub and
    service pods (the chart's config checksums; the service Deployment is Recreate under hostNetwork).
    Every job must end succeeded, once: one attempt, one Kubernetes Job with one pod, its output back."""
    from tests.k8s.controlplane import binary_paths

    kubeconfig = next(line.split("=", 1)[1] for line in up_stdout.splitlines() if line.startswith("KUBECONFIG="))
    kubectl = [str(binary_paths()["kubectl"]), "--kubeconfig", kubeconfig]
    status, tok = call("POST", url + "hub/api/users/alice/tokens", admin_token, {"note": "upgrade test"})
    assert status == 201, (status, tok)
    alice = tok["token"]
    api = url + "services/aistack/api/"
    ids = []
    for k in range(3):
        status, job = call("POST", api + "jobs", alice, {"notebook": sleeper_notebook(f"job-{k}"),
                                                          "profile": "small", "tenant": "default",
                                                          "name": f"upgrade-{k}"})
        assert status == 201, (status, job)
        ids.append(job["id"])

    def states() -> dict:
        out = {}
        for i in ids:
            status, job = call("GET", api + f"jobs/{i}", alice)
            out[i] = job.get("state") if status == 200 else f"HTTP {status}"
        return out

    deadline = time.monotonic() + 180
    while "running" not in (at_upgrade := states()).values():
        assert time.monotonic() < deadline, f"no job running in 180 s: {at_upgrade}"
        time.sleep(1)
    before = {p["metadata"]["name"] for p in json.loads(subprocess.run(
        [*kubectl, "-n", "aistack", "get", "pods", "-o", "json"], capture_output=True, text=True,
        check=True).stdout)["items"] if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "aistack"}
    t0 = time.monotonic()
    upgrade = subprocess.run([str(binary_paths()["helm"]), "--kubeconfig", kubeconfig, "upgrade", "aistack",
                              str(REPO / "helm" / "aistack-hub"), "-n", "aistack", "-f", str(state / "run" / "values.yaml"),
                              "--set", "config.Controller.preemption=true", "--wait", "--timeout", "4m"],
                             capture_output=True, text=True, timeout=300)
    upgrade_s = time.monotonic() - t0
    assert upgrade.returncode == 0, f"helm upgrade failed:\n{upgrade.stderr[-4000:]}"
    after = {p["metadata"]["name"] for p in json.loads(subprocess.run(
        [*kubectl, "-n", "aistack", "get", "pods", "-o", "json"], capture_output=True, text=True,
        check=True).stdout)["items"] if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "aistack"}
    assert before and after and not (before & after), f"the upgrade did not re-create the service pod: {before} -> {after}"
    after_upgrade = states()

    deadline = time.monotonic() + 300
    while True:
        now = states()
        if all(v in ("succeeded", "failed", "cancelled") for v in now.values()):
            break
        assert time.monotonic() < deadline, f"jobs not finished 300 s after the upgrade: {now}"
        time.sleep(2)
    assert set(now.values()) == {"succeeded"}, now
    for k, i in enumerate(ids):
        status, job = call("GET", api + f"jobs/{i}", alice)
        assert job["attempt"] == 1, f"job {i} ran more than once across the upgrade: {job}"
        status, body = get(api + f"jobs/{i}/output", alice)
        assert status == 200 and f"done job-{k}".encode() in body, (status, body[:500])
        pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-A", "-l", f"aistack.io/job-id={i}", "-o", "json"],
                                         capture_output=True, text=True, check=True).stdout)["items"]
        assert len(pods) == 1, f"job {i}: {len(pods)} pods (one expected): {[p['metadata']['name'] for p in pods]}"
    return {"upgrade_s": upgrade_s, "at_upgrade": at_upgrade, "after_upgrade": after_upgrade}


@pytest.mark.timeout(1800)  # a first run builds the images (minutes); later runs reuse them
def test_cluster_up_serves_the_hub_and_the_admin_token_then_down_restores_the_host():
    if os.geteuid() != 0:
        pytest.fail("cluster.sh needs root (the real node manages mounts, cgroups and network namespaces)",
                    pytrace=False)
    # A short path: containerd's socket lives under it (unix socket paths are limited to 107 bytes).
    state = Path(tempfile.mkdtemp(prefix="aistack-cluster-"))
    env = dict(os.environ, AISTACK_CLUSTER_DIR=str(state))
    before = host_snapshot()
    started = time.monotonic()
    up = subprocess.run([*CLUSTER, "up"], capture_output=True, text=True, env=env, timeout=1800, cwd=REPO)
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, f"cluster.sh up failed ({up.returncode}):\n{up.stderr[-6000:]}"
        last = up.stdout.strip().splitlines()[-2:]
        assert last[0].startswith("AISTACK_URL=") and last[1].startswith("AISTACK_ADMIN_TOKEN="), up.stdout
        url, token = last[0].split("=", 1)[1], last[1].split("=", 1)[1]
        print(f"cluster.sh up: {up_seconds:.0f}s; {url}")

        status, body = get(url + "hub/health")
        assert status == 200, (status, body[:500])
        status, body = get(url + "hub/login")
        assert status == 200 and b"password" in body.lower(), (status, body[:500])
        # The service, through the chart's proxy: the admin token is an admin there; no or a wrong token is not.
        status, body = get(url + "services/aistack/api/tenants", token)
        assert status == 200, (status, body[:500])
        assert "default" in body.decode(), body[:500]
        assert get(url + "services/aistack/api/tenants")[0] == 401
        assert get(url + "services/aistack/api/tenants", "not-a-token")[0] == 403

        server_seconds = start_a_server(url, token, up.stdout)
        print(f"a user's server pod (spawn -> ready through the proxy): {server_seconds:.1f}s")
        seen = run_as_job_in_chromium(url, token)
        print(f"Chromium in the cluster: signed in, Run as job -> running in {seen['submitToRunningMs'] / 1000:.1f}s, "
              f"succeeded, output and log shown (lab ready {seen['labReadyMs'] / 1000:.1f}s)")
        upgraded = jobs_survive_a_helm_upgrade(url, token, up.stdout, state)
        print(f"helm upgrade with jobs running: {upgraded['upgrade_s']:.0f}s; job states when it began "
              f"{upgraded['at_upgrade']}, when it returned {upgraded['after_upgrade']}; all succeeded once")

        shown = subprocess.run([*CLUSTER, "status"], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
        assert shown.returncode == 0 and "aistack-node-0" in shown.stdout and "kwok-a100-0" in shown.stdout, shown.stdout
        assert "Running" in shown.stdout, shown.stdout
    finally:
        down = subprocess.run([*CLUSTER, "down"], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert down.returncode == 0, f"cluster.sh down failed ({down.returncode}):\n{down.stderr[-4000:]}"
    after = host_snapshot()
    for key in before:
        assert after[key] == before[key], f"cluster.sh down left the host's {key} changed: {before[key]} -> {after[key]}"
    assert not (state / "run").exists(), "cluster.sh down left its state folder"
    assert subprocess.run([*CLUSTER, "status"], env=env, capture_output=True, cwd=REPO).returncode == 3
    shutil.rmtree(state)
