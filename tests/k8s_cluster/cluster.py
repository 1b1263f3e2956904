"""A one-machine Kubernetes with AIStack Hub installed: the process behind ``bash scripts/cluster.sh up``.

    python -m tests.k8s_cluster.cluster serve --state DIR     (from the repository root, as root)

It builds (or reuses) the images (scripts/images.sh: pause, job, platform), starts PostgreSQL (Debian's,
on 127.0.0.1: tests/job_service/helpers.PostgresServer), the control plane with kwok's GPU nodes
(tests/k8s/controlplane.py: whole GPUs, MIG, time-slice, HAMi) and one real node (tests/k8s/node.py:
kubelet + containerd), imports the images into the node, installs the chart (helm/aistack-hub) and waits
until the hub answers through the chart's proxy and the service accepts the admin token. Then it writes
DIR/ready (the KEY=value lines cluster.sh prints) and waits for SIGTERM/SIGINT (`cluster.sh down`),
on which it stops everything and restores the host (RealNode.stop: processes, mounts, bridge, iptables,
sysctls) and removes DIR. A failure writes DIR/failed and cleans up the same way.

The cluster has no kube-proxy and no cluster DNS, so the chart runs with ``hostNetwork`` (hub, proxy and
service pods in the real node's network namespace) and ``hostAliases`` mapping its Service names to the
node's address, where job and user pods (on the node's pod bridge) reach them too. Everything the
components write lives in DIR (control plane, node) and PostgreSQL's temporary folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from job_runner.binding.kube import SliceRenderer
from tests.job_service.helpers import PostgresServer
from tests.k8s.controlplane import REPO, ControlPlane
from tests.k8s.node import RealNode

RELEASE = NAMESPACE = "aistack"
CHART = REPO / "helm" / "aistack-hub"
# The node's ports the chart's pods take under hostNetwork: proxy (public, API), hub, service.
PROXY_PORT, PROXY_API_PORT, HUB_PORT, SERVICE_PORT = 8000, 8001, 8081, 10101
ADMIN = "admin"


def say(msg: str) -> None:
    print(f"cluster: {time.strftime('%H:%M:%S')} {msg}", flush=True)


def build_images() -> dict[str, str]:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "images.sh"), "pause", "job", "platform"],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/images.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    found = dict(line.split("=", 1) for line in proc.stdout.split() if line.startswith("AISTACK_"))
    for kind in ("PAUSE", "JOB", "PLATFORM"):
        for what in ("IMAGE", "ARCHIVE"):
            if f"AISTACK_{kind}_{what}" not in found:
                raise RuntimeError(f"scripts/images.sh printed no AISTACK_{kind}_{what}:\n{proc.stdout}")
    return found


def ports_in_use() -> list[int]:
    busy = []
    for port in (PROXY_PORT, PROXY_API_PORT, HUB_PORT, SERVICE_PORT):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                busy.append(port)
    return busy


def _image(ref: str) -> dict:
    name, tag = ref.rsplit(":", 1)
    return {"name": name, "tag": tag, "pullPolicy": "Never"}


def chart_values(images: dict[str, str], node: RealNode, cp: ControlPlane, hub_db: str, service_db: str) -> dict:
    """The chart's values for this cluster (the rest are the chart's defaults)."""
    api_port = cp.server.rsplit(":", 1)[1]
    # In the node's network namespace the API server is on 127.0.0.1 (its certificate names it); the
    # `kubernetes` Service's address would need kube-proxy. Explicit env wins over the kubelet's.
    api_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": api_port}
    names = [f"{RELEASE}-hub", f"{RELEASE}-aistack", f"{RELEASE}-proxy-api", f"{RELEASE}-aistack.{NAMESPACE}.svc"]
    on_node = {"kubernetes.io/hostname": node.name}
    platform = _image(images["AISTACK_PLATFORM_IMAGE"])
    job = _image(images["AISTACK_JOB_IMAGE"])
    return {
        "fullnameOverride": RELEASE,
        "hostNetwork": True,
        "hostAliases": [{"ip": node.ip, "hostnames": names}],
        "config": {
            "Authenticator": {"admin_users": [ADMIN]},
            # Job and user pods are on the pod bridge: they reach the service and the hub on the node's address.
            "KubernetesExecutor": {"service_url": f"http://{node.ip}:{SERVICE_PORT}/services/aistack/api/",
                                   "image_pull_policy": "Never"},
            "JupyterHub": {"hub_connect_url": f"http://{node.ip}:{HUB_PORT}"},
            "AIStackHub": {"service_url": f"http://{node.ip}:{SERVICE_PORT}"},
        },
        "hub": {"image": platform, "adminToken": {"create": True}, "nodeSelector": on_node,
                "db": {"type": "postgres", "url": hub_db}, "extraEnv": api_env},
        "proxy": {"chp": {"image": platform, "nodeSelector": on_node}},
        "aistack": {"image": platform, "nodeSelector": on_node, "port": SERVICE_PORT,
                    "db": {"type": "postgres", "url": service_db}, "extraEnv": api_env,
                    "jobs": {"image": images["AISTACK_JOB_IMAGE"]}},
        "singleuser": {"image": job},
        # The scheduler plans on the cluster's nodes: the real one (CPU servers and jobs) and kwok's GPU nodes.
        "inventory": [n for n in SliceRenderer().inventory_config(cp.kubectl_json("get", "nodes")["items"])
                      if n["gpus"] or n["name"] == node.name],
        "profiles": [
            {"slug": "small", "display_name": "Small (the real node)", "description": "0.5 CPU, 1 GiB",
             "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}},
            {"slug": "gpu-1", "display_name": "1 GPU (a kwok node)", "description": "one whole GPU, 1 CPU, 2 GiB",
             "request": {"kind": "whole", "gpus": 1, "cpu_milli": 1000, "memory_mib": 2048}},
        ],
    }


def http_status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_for(what: str, check, timeout: float, details=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{details()}")
        time.sleep(1)


class Cluster:
    def __init__(self, state: Path):
        self.state = state
        self.pg: PostgresServer | None = None
        self.cp: ControlPlane | None = None
        self.node: RealNode | None = None

    def up(self) -> dict[str, str]:
        t0 = time.monotonic()
        busy = ports_in_use()
        if busy:
            raise RuntimeError(f"ports {busy} of this machine are in use: the chart's hub, proxy and service "
                               "listen there (hostNetwork); stop what holds them")
        say("building or reusing the images (scripts/images.sh pause job platform)")
        images = build_images()
        say(f"images ready in {time.monotonic() - t0:.0f}s: {images['AISTACK_PLATFORM_IMAGE']}, {images['AISTACK_JOB_IMAGE']}")
        self.pg = PostgresServer().start()
        # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; the images hold psycopg2 (JupyterHub takes the URL as is).
        hub_db = self.pg.create_db("jupyterhub").replace("postgresql://", "postgresql+psycopg2://", 1)
        service_db = self.pg.create_db("aistack")
        say(f"PostgreSQL on 127.0.0.1:{self.pg.port}")
        self.cp = ControlPlane(workdir=self.state / "k8s", keep_workdir=True).start()
        say(f"control plane {self.cp.server} with kwok's GPU nodes in {self.cp.startup_seconds:.0f}s")
        self.node = RealNode(self.cp, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"]).start()
        for key in ("AISTACK_JOB_ARCHIVE", "AISTACK_PLATFORM_ARCHIVE"):
            self.node.import_image(images[key])
        say(f"real node {self.node.name} ({self.node.ip}) Ready, images imported {self.node.import_seconds}")
        values = self.state / "values.yaml"
        values.write_text(yaml.safe_dump(chart_values(images, self.node, self.cp, hub_db, service_db)))
        t1 = time.monotonic()
        result = self.cp.helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                              "--values", str(values), "--wait", "--timeout", "4m", check=False, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"helm install failed: {result.stderr.strip()}\n{self.diagnose()}")
        say(f"chart installed and its pods ready in {time.monotonic() - t1:.0f}s")
        url = f"http://{self.node.ip}:{PROXY_PORT}/"
        wait_for(f"{url}hub/health", lambda: http_status(url + "hub/health") == 200, 120, self.diagnose)
        token = self.secret("aistack.admin-token")
        tenants = url + "services/aistack/api/tenants"
        wait_for(f"the service at {tenants} to accept the admin token",
                 lambda: http_status(tenants, token) == 200, 120, self.diagnose)
        say(f"hub and service answer at {url}; up in {time.monotonic() - t0:.0f}s")
        return {"KUBECONFIG": str(self.cp.kubeconfig), "AISTACK_URL": url, "AISTACK_ADMIN_TOKEN": token}

    def secret(self, key: str) -> str:
        import base64
        data = self.cp.kubectl_json("-n", NAMESPACE, "get", "secret", f"{RELEASE}-secret")["data"]
        return base64.b64decode(data[key]).decode()

    def diagnose(self) -> str:
        """Pods and the recent logs of the chart's containers: what a failed start shows."""
        if self.cp is None:
            return ""
        out = [self.cp.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout]
        for component in ("hub", "proxy", "aistack"):
            out.append(f"--- {component}:\n" + self.cp.kubectl(
                "-n", NAMESPACE, "logs", "--tail=40", "-l", f"app.kubernetes.io/component={component}",
                check=False).stdout[-3000:])
        events = self.cp.kubectl("-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout
        out.append("--- events:\n" + "\n".join(events.splitlines()[-15:]))
        return "\n".join(out)

    def down(self) -> list[str]:
        problems: list[str] = []
        if self.cp is not None and self.cp.components:
            # First the release: its Deployments would re-create the pods the node's stop deletes.
            self.cp.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "90s",
                         check=False, timeout=120)
        if self.node is not None:
            problems += self.node.stop()
        if self.cp is not None:
            self.cp.stop()
        if self.pg is not None:
            self.pg.stop()
        return problems


def serve(state: Path) -> int:
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)

    def _stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster = Cluster(state)
    code = 0
    try:
        env = cluster.up()
        (state / "ready.tmp").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        os.replace(state / "ready.tmp", state / "ready")
        while True:
            signal.pause()
    except SystemExit as e:
        code = 0 if e.code in (128 + signal.SIGTERM, 128 + signal.SIGINT) else int(e.code or 0)
        say("stopping")
    except BaseException as e:  # noqa: BLE001  (any failure: written for cluster.sh, then cleaned up)
        code = 1
        (state / "failed").write_text(f"{e}\n")
        traceback.print_exc()
    # No second signal may interrupt the cleanup.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    problems = cluster.down()
    if problems:
        say("NOT RESTORED: " + "; ".join(problems))
        code = code or 2
    else:
        say("stopped; host restored")
    failed = (state / "failed").read_text() if (state / "failed").exists() else None
    shutil.rmtree(state, ignore_errors=True)
    if failed is not None:  # cluster.sh reads why from here after the state folder is gone
        (state.parent / "last-failure").write_text(failed)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="bring the cluster up, wait for SIGTERM, tear it down")
    s.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    return serve(args.state)


if __name__ == "__main__":
    sys.exit(main())
