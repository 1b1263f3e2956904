"""A real Kubernetes node beside the kwok ones: kubelet + containerd + runc + CNI bridge on this machine.

The kubelet is built from the same k8s.io/kubernetes module as the control plane (tests/k8s/build.sh);
containerd, runc and the CNI plugins are Debian's (scripts/setup.d/50-k8s.sh). Every state folder (the
kubelet's root, containerd's root and state, CNI leases, pod logs) lives in the node's work dir.
Settings that this kind of machine needs (a VM on cgroup v1 without CAP_SYS_RESOURCE) are explained
where they are set. Images come from scripts/images.sh archives, imported with ``ctr``: nothing is
pulled (pods use ``imagePullPolicy: Never``); the sandbox image is our own pause.

``stop()`` leaves the host as it found it: pods deleted, processes (kubelet, containerd, shims,
containers) stopped, mounts and network namespaces removed, the bridge and any CNI-/KUBE- iptables
chains deleted, the kubepods cgroups removed and the sysctls the kubelet and the bridge set restored.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.k8s.controlplane import Component, ControlPlane, StartFailed, binary_paths, free_port
from tests.k8s.hoststate import HostState

CNI_BIN_DIR = "/usr/lib/cni"
HOST_TOOLS = {"containerd": "/usr/bin/containerd", "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
              "runc": "/usr/sbin/runc", "ctr": "/usr/bin/ctr", "bridge CNI plugin": f"{CNI_BIN_DIR}/bridge",
              "host-local CNI plugin": f"{CNI_BIN_DIR}/host-local", "loopback CNI plugin": f"{CNI_BIN_DIR}/loopback"}


class NodeUnavailable(RuntimeError):
    """Something the real node needs is missing on this machine (the message says how to get it)."""


def check_host() -> dict[str, str]:
    """The host tools the node needs; raises NodeUnavailable naming the missing ones and the fix."""
    missing = [f"{name} ({path})" for name, path in HOST_TOOLS.items() if not os.access(path, os.X_OK)]
    kubelet = binary_paths()["kubelet"]
    if not os.access(kubelet, os.X_OK):
        missing.append(f"kubelet ({kubelet}; build: bash tests/k8s/build.sh kubelet)")
    if os.geteuid() != 0:
        missing.append("root (the kubelet and containerd manage mounts, cgroups and network namespaces)")
    if missing:
        raise NodeUnavailable("the real Kubernetes node cannot start; missing: " + "; ".join(missing)
                              + "\ninstall: apt-get install containerd runc containernetworking-plugins"
                              " (or AISTACK_SETUP_MODE=test bash scripts/setup.d/50-k8s.sh)")
    return dict(HOST_TOOLS, kubelet=str(kubelet))


def node_ip() -> str:
    """The host's address on its default route: the node's InternalIP (the kubelet refuses loopback),
    where the API server reaches the kubelet and pods reach services on the host."""
    out = subprocess.run(["ip", "-j", "route", "get", "1.1.1.1"], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)[0]["prefsrc"]
    except (ValueError, IndexError, KeyError):
        pass
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("scope") == "global":
                return a["local"]
    raise NodeUnavailable("no non-loopback IPv4 address on this machine for the node's InternalIP")


class RealNode:
    """One real node ``name`` joined to ``cp`` (a started ControlPlane). Use start()/stop() or ``with``."""

    def __init__(self, cp: ControlPlane, pause_image: str, pause_archive: str, name: str = "aistack-node-0",
                 workdir: Path | None = None, pod_subnet: str = "10.88.0.0/24", bridge: str = "aistack0",
                 labels: dict[str, str] | None = None, cgroup_root: str | None = None):
        """``cgroup_root``: the kubelet's cgroupRoot (created here in every hierarchy), for a second node on
        this machine: two kubelets under one /kubepods would each remove the other's pods' cgroups."""
        self.tools = check_host()
        self.cp, self.name = cp, name
        self.pause_image, self.pause_archive = pause_image, pause_archive
        self.workdir = Path(workdir or cp.workdir / f"node-{name}")
        self.pod_subnet, self.bridge = pod_subnet, bridge
        self.labels = {"aistack.test/pool": "real", **(labels or {})}
        self.ip = node_ip()
        self.components: list[Component] = []
        self.sock = self.workdir / "containerd" / "containerd.sock"
        self.cgroup_root = cgroup_root.strip("/") if cgroup_root else None
        self.host = HostState(self.workdir, bridge, self.cgroup_root or "kubepods")
        self.import_seconds: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> "RealNode":
        started = time.monotonic()
        self.host.record()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start(self, timeout: float) -> None:
        wd = self.workdir
        for d in ("containerd/root", "containerd/state", "containerd/opt", "cni/net.d", "cni/ipam", "kubelet",
                  "pod-logs", "volume-plugins", "logs"):
            (wd / d).mkdir(parents=True, exist_ok=True)
        self._write_cni_config()
        if self.cgroup_root:
            self._make_cgroup_root()
        containerd = Component("containerd", [self.tools["containerd"], f"--config={self._write_containerd_config()}"],
                               wd / "logs" / "containerd.log", None)
        containerd.start()
        self.components.append(containerd)
        self._wait_containerd(containerd, 30)
        self.import_image(self.pause_archive)
        kubelet_port, healthz_port = free_port(), free_port()
        kubelet = Component("kubelet", [
            self.tools["kubelet"], f"--config={self._write_kubelet_config(kubelet_port, healthz_port)}",
            f"--kubeconfig={self._kubelet_kubeconfig()}", f"--root-dir={wd / 'kubelet'}",
            f"--hostname-override={self.name}", f"--node-ip={self.ip}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in self.labels.items()), "--v=1",
        ], wd / "logs" / "kubelet.log", f"http://127.0.0.1:{healthz_port}/healthz")
        kubelet.start()
        self.components.append(kubelet)
        kubelet.wait_healthy(60)
        deadline = time.monotonic() + timeout
        while self.cp.kubectl("get", "node", self.name, check=False).returncode != 0:
            if time.monotonic() > deadline or kubelet.proc.poll() is not None:
                raise StartFailed(f"node {self.name} never registered; kubelet log:\n" + kubelet.log_tail())
            time.sleep(0.3)
        try:
            self.cp.wait_nodes_ready([self.name], max(5.0, deadline - time.monotonic()))
        except StartFailed as e:
            raise StartFailed(f"{e}\nkubelet log:\n{kubelet.log_tail()}") from None

    def _make_cgroup_root(self) -> None:
        """The kubelet refuses a cgroupRoot that does not exist; a new cpuset cgroup starts empty (copy the
        parent's CPUs and memory nodes, or nothing could run in it). Removed by HostState.restore."""
        for hierarchy in glob.glob("/sys/fs/cgroup/*"):
            if os.path.islink(hierarchy) or not os.path.isdir(hierarchy) or hierarchy.endswith("/unified"):
                continue
            top = os.path.join(hierarchy, self.cgroup_root)
            os.makedirs(top, exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if os.path.exists(os.path.join(top, name)):
                    with open(os.path.join(hierarchy, name)) as f:
                        value = f.read().strip()
                    with open(os.path.join(top, name), "w") as f:
                        f.write(value)

    def _write_containerd_config(self) -> Path:
        wd = self.workdir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{wd / 'root'}"
state = "{wd / 'state'}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{wd / 'opt'}"
[{cri}]
  # Our pause image, imported from an archive: nothing is ever pulled.
  sandbox_image = "{self.pause_image}"
  # No CAP_SYS_RESOURCE in this VM: lowering a container's oom_score_adj below ours fails and every
  # sandbox would die with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{self.tools['runc']}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self.workdir / 'cni' / 'net.d'}"
  max_conf_num = 1
"""
        path = wd / "config.toml"
        path.write_text(config)
        return path

    def _write_cni_config(self) -> None:
        # A bridge with host-local addresses. No masquerading: pods only talk to this machine (the
        # service on the node IP, through the bridge's gateway), so no iptables rule is ever added.
        conf = {"cniVersion": "0.4.0", "name": "aistack", "plugins": [{
            "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_subnet}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.workdir / "cni" / "ipam")},
        }]}
        (self.workdir / "cni" / "net.d" / "10-aistack.conflist").write_text(json.dumps(conf, indent=1))

    def _write_kubelet_config(self, port: int, healthz_port: int) -> Path:
        certs = self.cp.certs
        serving = f"node-{self.name}-serving"
        certs._signed(serving, f"/CN={self.name}", "serverAuth", f"IP:{self.ip},DNS:{self.name}")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # This VM has cgroup v1 only (Kubernetes 1.35 needs the opt-out; 1.36 drops v1) and no systemd.
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            # Else the kubelet adds a DROP rule for non-loopback traffic to 127.0.0.0/8 (and KUBE-* chains).
            "makeIPTablesUtilChains": False,
            # Our images are imported, not pulled: never garbage-collect them, and evict only when truly full.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            # The kubelet raises its open files limit to this; the VM's hard limit is lower than the 1M default.
            "maxOpenFiles": 20000,
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "failSwapOn": False,
            "address": self.ip, "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
            "tlsCertFile": str(certs.path(f"{serving}.crt")), "tlsPrivateKeyFile": str(certs.path(f"{serving}.key")),
            # Only the API server (its kubelet client certificate) or authorized callers may read logs.
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(certs.path("ca.crt"))}},
            "authorization": {"mode": "Webhook"},
            "rotateCertificates": False, "serverTLSBootstrap": False,
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            # Report pod status changes quickly (the defaults suit large clusters).
            "nodeStatusUpdateFrequency": "5s", "syncFrequency": "10s",
        }
        if self.cgroup_root:
            config["cgroupRoot"] = "/" + self.cgroup_root
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _kubelet_kubeconfig(self) -> Path:
        # The Node authorizer and NodeRestriction know a kubelet by this identity.
        user = f"node-{self.name}"
        self.cp.certs._signed(user, f"/O=system:nodes/CN=system:node:{self.name}", "clientAuth")
        return self.cp.certs.kubeconfig(self.cp.server, user, self.workdir / "kubelet.kubeconfig")

    def _wait_containerd(self, containerd: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if containerd.proc.poll() is not None:
                raise StartFailed(f"containerd exited with {containerd.proc.returncode}:\n" + containerd.log_tail())
            if self.sock.exists() and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise StartFailed(f"containerd not answering on {self.sock} after {timeout}s:\n" + containerd.log_tail())

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([self.tools["ctr"], f"--address={self.sock}", "--namespace=k8s.io", *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StartFailed(f"ctr {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result

    def import_image(self, archive: str) -> None:
        """Load an image archive (scripts/images.sh) into the node's containerd (what a pull would do)."""
        started = time.monotonic()
        self.ctr("images", "import", str(archive))
        self.import_seconds[os.path.basename(str(archive))] = time.monotonic() - started

    def logs(self, name: str, lines: int = 60) -> str:
        for component in self.components:
            if component.name == name:
                return component.log_tail(lines)
        return ""

    # -- teardown ----------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop the node and undo what it did to the host; returns what could not be undone (empty)."""
        problems: list[str] = []
        kubelet = next((c for c in self.components if c.name == "kubelet"), None)
        if kubelet is not None and kubelet.proc and kubelet.proc.poll() is None:
            # Through the kubelet first: it stops the containers and tears the pods' networks down (CNI DEL).
            self.cp.kubectl("delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={self.name}",
                            "--grace-period=2", "--wait=true", "--timeout=60s", check=False, timeout=90)
        for component in reversed(self.components):
            if component.name == "kubelet":
                component.stop()
        containerd = next((c for c in self.components if c.name == "containerd"), None)
        if self.sock.exists() and containerd is not None and containerd.proc and containerd.proc.poll() is None:
            self._kill_tasks()
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        problems += self.host.restore(self.sock)
        if self.cp.kubeconfig is not None and self.cp.components:
            self.cp.kubectl("delete", "node", self.name, "--ignore-not-found", check=False)
        return problems

    def kill(self) -> None:
        """The node dies (power lost): kubelet, containerd, its shims and every container process killed at
        once, nothing told to the API server (its Node and pods stay as they were). stop() cleans up after."""
        for component in self.components:
            if component.proc and component.proc.poll() is None:
                component.proc.kill()
                component.proc.wait(10)
        self.host._kill_leftovers(self.sock)

    def _kill_tasks(self) -> None:
        tasks = self.ctr("tasks", "list", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=30)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, check=False, timeout=30)

    def __enter__(self) -> "RealNode":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _main(argv: list[str] | None = None) -> int:
    """``python -m tests.k8s.node up`` (from the repository root): a control plane, kwok's GPU nodes and one real node with our images,
    until Ctrl-C; then everything stopped and the host restored."""
    import argparse
    import sys

    from tests.k8s.controlplane import REPO

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("cmd", choices=["up"])
    parser.add_argument("--workdir", type=Path, help="keep state and logs here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    built = subprocess.run(["bash", str(REPO / "scripts" / "images.sh")], capture_output=True, text=True)
    if built.returncode != 0:
        print(built.stderr[-4000:], file=sys.stderr)
        return 1
    images = dict(line.split("=", 1) for line in built.stdout.split() if line.startswith("AISTACK_"))
    with ControlPlane(workdir=args.workdir, keep_workdir=args.workdir is not None) as cp:
        node = RealNode(cp, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"])
        try:
            node.start()
            node.import_image(images["AISTACK_JOB_ARCHIVE"])
            print(f"real node {node.name} ({node.ip}) Ready beside the kwok nodes; job image {images['AISTACK_JOB_IMAGE']}")
            print(f"export KUBECONFIG={cp.kubeconfig}")
            print(f"logs: {cp.workdir / 'logs'} {node.workdir / 'logs'}   (Ctrl-C stops it)")
            sys.stdout.flush()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            problems = node.stop()
            if problems:
                print("not restored: " + "; ".join(problems), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
