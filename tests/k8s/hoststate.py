"""What a real node (tests/k8s/node.py) changes on the host, recorded before it starts and undone after
it stops: processes left in kubepods and containerd shims, kubepods cgroups, mounts and network
namespaces, the CNI bridge, CNI-/KUBE- iptables chains, sysctls, fixed folders outside its work dir."""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

# Set by the kubelet (panic settings, overcommit) and the bridge plugin (forwarding): restored on stop.
SYSCTLS = ("kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "net.ipv4.ip_forward")
# Where runtimes mount things that do not live in our work dir.
FOREIGN_MOUNT_ROOTS = ("/run/netns", "/var/run/netns", "/run/containerd")
# Fixed paths outside the work dir: the kubelet's device-plugin socket folder, go-cni's result cache,
# containerd's shim sockets (/run/containerd/s), the network namespaces. Removed if we created them.
FOREIGN_DIRS = ("/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/run/netns")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _mounts() -> list[str]:
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            targets.append(line.split()[4].replace("\\040", " "))
    return targets


def _iptables_save() -> str:
    if not shutil.which("iptables-save"):
        return ""
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


class HostState:
    """``record()`` before the node starts; ``restore(containerd_socket)`` after its kubelet and containerd
    stopped: returns what could not be undone (empty when the host is as it was).

    With two nodes on this machine, what is the node's own (its containerd's shims, its cgroups, mounts in its
    work dir, its bridge) is undone as it stops; what the nodes share (network namespaces, mounts under
    /run, the kubelet's fixed folders, iptables chains, sysctls) only when the last one stops, back to what
    it was before the first started: else the first to stop would remove the other's pods' namespaces."""

    _active: list["HostState"] = []  # the nodes of this process recorded and not yet restored

    def __init__(self, workdir: Path, bridge: str, cgroup_top: str = "kubepods"):
        # cgroup_top: the node's top cgroup under each hierarchy (the kubelet's cgroupRoot, or its
        # kubepods when that is "/"): a second node on this machine has its own
        self.workdir, self.bridge, self.cgroup_top = Path(workdir), bridge, cgroup_top.strip("/")
        self.before: dict = {}

    def record(self) -> None:
        """Before the node starts."""
        own = {
            "sysctls": {n: _sysctl_path(n).read_text().strip() for n in SYSCTLS if _sysctl_path(n).exists()},
            "mounts": set(_mounts()),
            "bridge": Path(f"/sys/class/net/{self.bridge}").exists(),
            "iptables": _iptables_save(),
            "cgroups": {p for p in glob.glob(f"/sys/fs/cgroup/*/{self.cgroup_top}")},
            "dirs": {d for d in FOREIGN_DIRS if os.path.lexists(d)},
            "netns": set(glob.glob("/run/netns/*")),
        }
        first = next((h for h in HostState._active if h is not self), None)
        # the shared parts as they were before the first node started
        self.before = own if first is None else {**first.before, "bridge": own["bridge"], "cgroups": own["cgroups"]}
        if self not in HostState._active:
            HostState._active.append(self)

    def restore(self, sock: Path) -> list[str]:
        problems: list[str] = []
        if self in HostState._active:
            HostState._active.remove(self)
        last = not HostState._active
        self._kill_leftovers(sock)
        self._remove_cgroups(problems)
        self._unmount(problems, shared=last)
        if not self.before.get("bridge", True) and Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
        if not last:
            return problems
        self._remove_iptables_chains(problems)
        for name, value in self.before.get("sysctls", {}).items():
            try:
                if _sysctl_path(name).read_text().strip() != value:
                    _sysctl_path(name).write_text(value)
            except OSError as e:
                problems.append(f"sysctl {name}: {e}")
        for d in FOREIGN_DIRS:
            if self.before and d not in self.before["dirs"] and not os.path.ismount(d):
                shutil.rmtree(d, ignore_errors=True)
        return problems

    def _kill_leftovers(self, sock: Path) -> None:
        """The shims of our containerd (they outlive it by design) and anything left in our cgroups."""
        for proc in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                cmd = Path(proc).read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(sock).encode() in cmd:
                try:
                    os.kill(int(proc.split("/")[2]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for procs in glob.glob(f"/sys/fs/cgroup/pids/{self.cgroup_top}/**/cgroup.procs", recursive=True):
            for pid in Path(procs).read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _remove_cgroups(self, problems: list[str]) -> None:
        for top in glob.glob(f"/sys/fs/cgroup/*/{self.cgroup_top}"):
            if top in self.before.get("cgroups", set()):
                continue
            dirs = sorted((d for d, _, _ in os.walk(top)), key=len, reverse=True)
            deadline = time.monotonic() + 10
            for d in dirs:
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:  # busy while the last killed processes exit
                        if time.monotonic() > deadline:
                            problems.append(f"cgroup {d}: {e}")
                            break
                        time.sleep(0.1)

    def _unmount(self, problems: list[str], shared: bool = True) -> None:
        roots = (str(self.workdir), *FOREIGN_MOUNT_ROOTS) if shared else (str(self.workdir),)
        new = [m for m in _mounts() if m not in self.before.get("mounts", set())
               and any(m == r or m.startswith(r + "/") for r in roots)]
        for target in sorted(set(new), key=len, reverse=True):
            r = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
            if r.returncode != 0 and os.path.ismount(target):
                problems.append(f"umount {target}: {r.stderr.strip()}")
        if not shared:
            return
        for ns in set(glob.glob("/run/netns/cni-*")) - self.before.get("netns", set()):
            try:
                os.unlink(ns)
            except OSError as e:
                problems.append(f"netns {ns}: {e}")

    def _remove_iptables_chains(self, problems: list[str]) -> None:
        """Delete CNI-*/KUBE-* chains (and the rules jumping to them) that were not there before."""
        before = self.before.get("iptables", "")
        after = _iptables_save()
        if after == before:
            return
        old = {line for line in before.splitlines()}
        table = None
        rules, chains = [], []
        for line in after.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line in old:
                continue
            elif line.startswith(":") and line[1:].startswith(("CNI-", "KUBE-")):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith(("-A CNI-", "-A KUBE-")) or " -j CNI-" in line or " -j KUBE-" in line:
                rules.append((table, line))
        for table, line in rules:
            subprocess.run(["iptables", "-t", table, "-D", *shlex.split(line)[1:]], capture_output=True)
        for table, chain in chains:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
            r = subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"iptables -t {table} -X {chain}: {r.stderr.strip()}")
