"""A real Kubernetes control plane for the tests, run as local processes.

etcd, kube-apiserver (RBAC on, service-account signing keys, TLS with client certificates),
kube-controller-manager, kube-scheduler and kwok (fake nodes with GPU resources; pods of Jobs
run to completion) listen on free loopback ports. Only containers are simulated.

Binaries come from tests/k8s/build.sh (cached outside the repo by version). When one is missing,
starting raises BinariesMissing with the command that builds them: tests never silently skip.

Developers: ``python tests/k8s/controlplane.py up`` starts one and prints its kubeconfig.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAGES_FILE = HERE / "kwok" / "stages.yaml"
NODES_FILE = HERE / "kwok" / "nodes.yaml"
POD_LOG_FILE = HERE / "kwok" / "pod.log"

# The controllers the tests rely on (Jobs, quotas, service accounts, garbage collection) plus
# what `helm install` of our chart needs (Deployments, PVC binding, aggregated RBAC roles).
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "resourcequota-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "persistentvolume-binder-controller",
    "endpointslice-controller",
    # Removes the node.kubernetes.io/not-ready taint once kwok reports a node Ready (and watches
    # the nodes' Lease heartbeats, as on a real cluster).
    "node-lifecycle-controller",
    # Evicts pods from nodes tainted NoExecute (unreachable, out-of-service) past their tolerations: with
    # pod GC, what removes a dead node's pods (tests/k8s_node/test_node_loss.py).
    "taint-eviction-controller",
)
SERVICE_CIDR = "10.96.0.0/16"
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")


class BinariesMissing(RuntimeError):
    """A control-plane binary has not been built on this machine."""


class CommandFailed(subprocess.CalledProcessError):
    """kubectl/helm failed; str() carries its stderr so test failures say why."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()[-3000:]}"


class StartFailed(RuntimeError):
    """A component did not become healthy; the message carries the tail of its log."""


def read_versions() -> dict[str, str]:
    """The pinned versions from versions.env (shared with build.sh)."""
    versions = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("AISTACK_K8S_CACHE", Path.home() / ".cache" / "aistack-k8s"))


def binary_paths() -> dict[str, Path]:
    """Where build.sh puts each binary."""
    v = read_versions()
    k8s = cache_dir() / f"k8s-{v['K8S_VERSION']}" / "bin"
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet")
    paths = {name: k8s / name for name in names}
    paths["kwok"] = cache_dir() / f"kwok-{v['KWOK_VERSION']}" / "bin" / "kwok"
    paths["helm"] = cache_dir() / f"helm-{v['HELM_VERSION']}" / "bin" / "helm"
    return paths


def require_binaries(*names: str) -> dict[str, Path]:
    """The binary paths; raises BinariesMissing naming the build command if any is absent."""
    paths = binary_paths()
    wanted = names or tuple(paths)
    missing = [str(paths[n]) for n in wanted if not os.access(paths[n], os.X_OK)]
    if missing:
        raise BinariesMissing(
            "the test Kubernetes control plane is not built on this machine; missing: "
            + ", ".join(missing)
            + f"\nbuild it (first time ~1 h on 2 cores, then cached) with:  bash {HERE / 'build.sh'}"
            + "\n(or `AISTACK_SETUP_MODE=test bash scripts/setup.d/50-k8s.sh`)"
        )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


class Certificates:
    """A throw-away CA, the API server's serving certificate, client certificates and the
    service-account signing key pair, made with the openssl CLI."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / name

    def create(self) -> "Certificates":
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
                 "-subj", "/CN=aistack-test-ca", cwd=self.dir)
        sans = ",".join([
            "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
        ])
        self._signed("apiserver", "/CN=kube-apiserver", "serverAuth", sans)
        # kwok plays the kubelets' API (pod logs) for every fake node on 127.0.0.1.
        self._signed("kwok-serving", "/CN=kwok", "serverAuth", "IP:127.0.0.1,DNS:localhost")
        # Identities: admin is a cluster admin; the controllers use the identities the RBAC
        # bootstrap policy has roles for (as kubeadm sets them up).
        self._signed("admin", "/O=system:masters/CN=aistack-test-admin", "clientAuth")
        self._signed("controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
        self._signed("scheduler", "/CN=system:kube-scheduler", "clientAuth")
        self._signed("kwok", "/O=system:masters/CN=kwok", "clientAuth")
        # The API server's identity towards kubelets (logs, exec, port-forward), as kubeadm's
        # apiserver-kubelet-client; kwok's and the real node's kubelet serving certificates are
        # signed by the same CA, which the API server checks (--kubelet-certificate-authority).
        self._signed("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth")
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=self.dir)
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=self.dir)
        return self

    def _signed(self, name: str, subject: str, usage: str, sans: str | None = None) -> None:
        ext = self.dir / f"{name}.ext"
        lines = ["keyUsage=critical,digitalSignature,keyEncipherment", f"extendedKeyUsage={usage}"]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", ext.name, "-out", f"{name}.crt", cwd=self.dir)

    def kubeconfig(self, server: str, user: str, path: Path) -> Path:
        """A self-contained kubeconfig (certificates embedded) for one of the client identities."""
        def b64(name: str) -> str:
            return base64.b64encode(self.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "aistack-test", "cluster": {
                "server": server, "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}}],
            "contexts": [{"name": "aistack-test", "context": {"cluster": "aistack-test", "user": user}}],
            "current-context": "aistack-test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started us dies (Linux), so a
    killed test run leaves no control plane behind on a shared machine."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Component:
    """One control-plane process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path, health_url: str | None, ssl_ctx=None):
        self.name, self.argv, self.log_path = name, argv, log
        self.health_url, self.ssl_ctx = health_url, ssl_ctx
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        # Own process group, so stopping it never signals the test runner.
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=3, context=self.ssl_ctx) as r:
                return r.status == 200
        except Exception:
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartFailed(f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n"
                                  + self.log_tail())
            if self.health_url is None or self.healthy():
                return
            time.sleep(0.3)
        raise StartFailed(f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s; "
                          f"log {self.log_path}:\n" + self.log_tail())

    def stop(self, grace: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok.

    Use as a context manager or call start()/stop(). After start(): ``kubeconfig`` (cluster-admin,
    certificates embedded), ``server`` (https URL) and helpers: kubectl(), kubectl_json(), apply(),
    create_namespace(), add_nodes(), wait_nodes_ready(), helm(), env().
    """

    def __init__(self, workdir: Path | None = None, nodes_file: Path | None = NODES_FILE,
                 keep_workdir: bool = False):
        self.bin = require_binaries(*CONTROL_PLANE_BINARIES)
        self.bin["helm"] = binary_paths()["helm"]  # checked when helm() is used
        self.versions = read_versions()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="aistack-k8s-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.nodes_file = nodes_file
        self.components: list[Component] = []
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.certs: Certificates | None = None  # the CA: a real node (tests/k8s/node.py) signs its certificates with it

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> "ControlPlane":
        started = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start(self, timeout: float) -> None:
        wd = self.workdir
        certs = self.certs = Certificates(wd / "pki").create()
        logs = wd / "logs"
        logs.mkdir(exist_ok=True)
        etcd_port, etcd_peer, api_port, cm_port, sched_port, kwok_port = (free_port() for _ in range(6))
        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig = certs.kubeconfig(self.server, "admin", wd / "admin.kubeconfig")
        cm_kubeconfig = certs.kubeconfig(self.server, "controller-manager", wd / "controller-manager.kubeconfig")
        sched_kubeconfig = certs.kubeconfig(self.server, "scheduler", wd / "scheduler.kubeconfig")
        kwok_kubeconfig = certs.kubeconfig(self.server, "kwok", wd / "kwok.kubeconfig")

        admin_ctx = ssl.create_default_context(cafile=str(certs.path("ca.crt")))
        admin_ctx.load_cert_chain(str(certs.path("admin.crt")), str(certs.path("admin.key")))
        # controller-manager and scheduler serve /healthz with a self-signed certificate.
        insecure_ctx = ssl.create_default_context()
        insecure_ctx.check_hostname = False
        insecure_ctx.verify_mode = ssl.CERT_NONE
        p = {name: str(certs.path(name)) for name in ("ca.crt", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub")}

        etcd = Component("etcd", [
            str(self.bin["etcd"]), "--name=default", f"--data-dir={wd / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            # Test data: speed over durability.
            "--unsafe-no-fsync", "--log-level=warn",
        ], logs / "etcd.log", f"http://127.0.0.1:{etcd_port}/health")
        apiserver = Component("kube-apiserver", [
            str(self.bin["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={wd / 'apiserver-certs'}",
            f"--tls-cert-file={p['apiserver.crt']}", f"--tls-private-key-file={p['apiserver.key']}",
            f"--client-ca-file={p['ca.crt']}",
            "--authorization-mode=Node,RBAC", "--anonymous-auth=false",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-key-file={p['sa.pub']}",
            f"--service-account-signing-key-file={p['sa.key']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The loopback address may not appear in the `kubernetes` Service's endpoints.
            "--endpoint-reconciler-type=none",
            # Reach the kubelet (kwok's, at 127.0.0.1, or a real node's) at the node's InternalIP, for
            # pod logs, with a client certificate, verifying the kubelet's serving certificate.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={p['ca.crt']}",
            f"--kubelet-client-certificate={certs.path('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={certs.path('apiserver-kubelet-client.key')}",
            "--allow-privileged=true", "--profiling=false", "--v=1",
        ], logs / "kube-apiserver.log", f"https://127.0.0.1:{api_port}/readyz", admin_ctx)
        controller_manager = Component("kube-controller-manager", [
            str(self.bin["kube-controller-manager"]),
            f"--kubeconfig={cm_kubeconfig}", f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={cm_port}",
            f"--cert-dir={wd / 'controller-manager-certs'}",
            f"--controllers={','.join(CONTROLLERS)}",
            # Each controller acts with its own service account, as in kubeadm clusters.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p['sa.key']}", f"--root-ca-file={p['ca.crt']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Client rate limit of all controllers (default 20 QPS): raised, as kwokctl does, so
            # bursts of Jobs are not throttled on the way to the API server.
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--leader-elect=false", "--profiling=false", "--v=1",
        ], logs / "kube-controller-manager.log", f"https://127.0.0.1:{cm_port}/healthz", insecure_ctx)
        scheduler = Component("kube-scheduler", [
            str(self.bin["kube-scheduler"]),
            f"--kubeconfig={sched_kubeconfig}", f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
            f"--cert-dir={wd / 'scheduler-certs'}",
            "--leader-elect=false", "--profiling=false", "--v=1",
        ], logs / "kube-scheduler.log", f"https://127.0.0.1:{sched_port}/healthz", insecure_ctx)
        kwok = Component("kwok", [
            str(self.bin["kwok"]), f"--kubeconfig={kwok_kubeconfig}",
            f"--config={STAGES_FILE}", f"--config={self._write_logs_config()}",
            # Only nodes we mark as fake: a real node could never be mistaken for one.
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16",
            # Every fake node's kubelet endpoint is kwok's server: `kubectl logs` works.
            "--node-ip=127.0.0.1", f"--node-port={kwok_port}", f"--server-address=127.0.0.1:{kwok_port}",
            f"--tls-cert-file={certs.path('kwok-serving.crt')}", f"--tls-private-key-file={certs.path('kwok-serving.key')}",
        ], logs / "kwok.log", f"http://127.0.0.1:{kwok_port}/healthz")

        etcd.start()
        self.components.append(etcd)
        etcd.wait_healthy(30)
        apiserver.start()
        self.components.append(apiserver)
        apiserver.wait_healthy(timeout)
        for component in (controller_manager, scheduler, kwok):
            component.start()
            self.components.append(component)
        for component in (controller_manager, scheduler, kwok):
            component.wait_healthy(60)
        if self.nodes_file is not None:
            self.add_nodes(self.nodes_file.read_text())
        self.wait_for_default_service_account("default", timeout=60)

    def _write_logs_config(self) -> Path:
        """kwok ClusterLogs: every container's log is tests/k8s/kwok/pod.log."""
        path = self.workdir / "kwok-logs.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "all-pods"},
            "spec": {"selector": {}, "logs": [{"containers": [], "logsFile": str(POD_LOG_FILE), "follow": False}]},
        }))
        return path

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self, name: str, lines: int = 60) -> str:
        """The tail of one component's log (etcd, kube-apiserver, kube-controller-manager, ...)."""
        for component in self.components:
            if component.name == name:
                return component.log_tail(lines)
        return (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")

    # -- helpers ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a client process: KUBECONFIG and PATH with kubectl and helm first."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        dirs = {str(self.bin["kubectl"].parent), str(self.bin["helm"].parent)}
        env["PATH"] = os.pathsep.join([*dirs, env.get("PATH", "")])
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run kubectl as cluster admin; raises CommandFailed (a CalledProcessError whose message has stderr)."""
        return self._run([str(self.bin["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args],
                         input, check, timeout)

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        require_binaries("helm")
        return self._run([str(self.bin["helm"]), f"--kubeconfig={self.kubeconfig}", *args],
                         None, check, timeout)

    def _run(self, argv, input, check, timeout) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                                env=self.env())
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def apply(self, manifest, server_side: bool = False) -> str:
        """kubectl apply of a YAML string, a dict or a list of dicts."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs)
        args = ["apply", "-f", "-"] + (["--server-side"] if server_side else [])
        return self.kubectl(*args, input=manifest).stdout

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels or {}}})
        self.wait_for_default_service_account(name)

    def wait_for_default_service_account(self, namespace: str, timeout: float = 30) -> None:
        """Pods are refused until the serviceaccount controller made `default` in a namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise StartFailed(f"no default service account in {namespace} after {timeout}s; controller-manager log:\n"
                          + self.logs("kube-controller-manager"))

    def add_nodes(self, manifest, timeout: float = 60) -> list[str]:
        """Create fake nodes (YAML or dicts, see gpu_node()) and wait until kwok made them Ready."""
        docs = list(yaml.safe_load_all(manifest)) if isinstance(manifest, str) else (
            manifest if isinstance(manifest, list) else [manifest])
        docs = [d for d in docs if d]
        # Nodes keep the status they are created with: that is where capacity comes from.
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs))
        names = [d["metadata"]["name"] for d in docs]
        self.wait_nodes_ready(names, timeout)
        return names

    def wait_nodes_ready(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for node in self.kubectl_json("get", "nodes")["items"]:
                conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                # Schedulable only once the node lifecycle controller lifted the not-ready taint.
                tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints", []))
                if conditions.get("Ready") == "True" and not tainted:
                    pending.discard(node["metadata"]["name"])
            if pending:
                time.sleep(0.3)
        if pending:
            raise StartFailed(f"nodes not Ready after {timeout}s: {sorted(pending)}; kwok log:\n" + self.logs("kwok"))


# -- fake GPU nodes --------------------------------------------------------------------------

def gpu_node(name: str, *, product: str | None = None, gpus: int = 0, gpu_memory_mib: int = 0,
             resources: dict[str, str | int] | None = None, labels: dict[str, str] | None = None,
             cpu: str = "64", memory: str = "512Gi", pods: int = 110,
             taints: list[dict] | None = None) -> dict:
    """A kwok-managed Node with GPU Feature Discovery labels and extended resources.

    ``resources`` are extra allocatable resources (``nvidia.com/gpu``, ``nvidia.com/mig-1g.10gb``,
    ``nvidia.com/gpu.shared``, ``nvidia.com/gpumem``, ...); ``product``/``gpus``/``gpu_memory_mib``
    become the GFD labels nvidia.com/gpu.product, .count, .memory.
    """
    all_labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    if product:
        all_labels.update({
            "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": str(gpus), "nvidia.com/gpu.memory": str(gpu_memory_mib),
        })
    all_labels.update(labels or {})
    allocatable = {"cpu": str(cpu), "memory": memory, "pods": str(pods)}
    allocatable.update({k: str(v) for k, v in (resources or {}).items()})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels,
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": allocatable, "capacity": dict(allocatable)},
    }


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a control plane and wait for Ctrl-C")
    up.add_argument("--workdir", type=Path, help="keep state and logs here (default: a temp dir, removed)")
    sub.add_parser("check", help="exit 1 with the build command if a binary is missing")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        try:
            for name, path in require_binaries().items():
                print(f"{name:24} {path}")
        except BinariesMissing as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    cp = ControlPlane(workdir=args.workdir, keep_workdir=args.workdir is not None)
    with cp:
        print(f"control plane up in {cp.startup_seconds:.1f}s: {cp.server}")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"logs: {cp.workdir / 'logs'}   (Ctrl-C stops it)")
        sys.stdout.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(_main())
