"""Run a workload as a user's account inside a bubblewrap sandbox: the one implementation for the local
spawner's servers and the local executor's jobs.

What the workload sees (``Sandbox.command``): a fresh root (tmpfs) with

- the system folders read-only (``/usr``, ``/etc``, ``/lib*``, ``/opt``; ``/bin`` etc. as on the host),
  a private ``/tmp``, ``/var/tmp`` and ``/run``, a minimal ``/dev`` plus the NVIDIA devices, a ``/proc``
  of its own PID namespace (so no other process, the hub's and the service's ``/proc/<pid>/environ``
  included, is visible), ``/sys`` read-only;
- the Python environment read-only at the same paths (``python_paths``: the venv, the interpreter's
  installation even under ``/root``, whose mode 0700 would keep an unprivileged process from even
  starting it, and our packages' source folders for an editable install), plus ``ro``;
- read-write: the user's home and the binds the caller gives (a job's run files);
- nothing else: the data folder, other users' homes and ``/root`` do not exist in there. ``hide`` masks
  a path with an empty tmpfs should it lie inside something shown.

Root starts ``bwrap`` (so it can mount), and the command drops to the account with ``setpriv`` (real,
effective and saved uid/gid, the account's groups, no capabilities, no-new-privs) before our command runs.
``--as-pid-1``: the workload itself is PID 1 of its namespace, so signals reach it directly (bwrap does not
forward them) and, when it ends, the kernel kills everything left inside (kernels, stray children).
``launch`` returns the workload's pid as the host sees it (``--info-fd``): that is the pid to signal,
poll and record.

The environment is the caller's, filtered (``scrub_env``): an explicit allow-list, and no variable whose
value carries a secret the caller names.

This module imports nothing of ours (layer 1).
"""
from __future__ import annotations

import glob
import json
import os
import select
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field

SYSTEM_RO = ("/usr", "/etc", "/opt", "/srv")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
# Names that never enter a workload, whatever a caller's allow-list says.
SECRET_NAMES = frozenset({
    "AISTACK_ADMIN_TOKEN", "AISTACK_SERVICE_TOKEN", "AISTACK_JOB_TOKEN_SECRET", "AISTACK_METRICS_TOKEN",
    "AISTACK_DB_URL", "AISTACK_HUB_DB_URL", "JPY_COOKIE_SECRET", "CONFIGPROXY_AUTH_TOKEN",
})
# What a job's environment may hold besides what the caller adds explicitly.
BASE_ALLOW = frozenset({
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TERM", "VIRTUAL_ENV", "PYTHONPATH",
    "LD_LIBRARY_PATH", "JUPYTER_PATH", "CUDA_HOME", "CUDA_PATH",
})


_probed: dict = {}


def unavailable() -> str | None:
    """Why sandboxes cannot start here (None: they can). Probed once per process (a spawn asks again)."""
    if "why" not in _probed:
        _probed["why"] = _probe()
    return _probed["why"]


def _probe() -> str | None:
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if not shutil.which(tool):
            return (f"{tool} is not installed: apt-get install {package} (scripts/setup.d/15-sandbox.sh), or set "
                    "Isolation.mode: single-user")
    probe = subprocess.run([shutil.which("bwrap"), "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
                            "--dev", "/dev", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"bubblewrap cannot create a sandbox here ({probe.stderr.strip()}): this machine or container "
                "forbids mount/PID namespaces; allow them, or set Isolation.mode: single-user")
    return None


def python_paths(packages: tuple[str, ...] = ()) -> list[str]:
    """Folders that make this interpreter and its packages work: the venv, the real installation behind
    its symlinks, and each named top-level package's folder when it lives outside those (editable
    installs map packages onto a source tree; only the packages are shown, not the tree)."""
    import importlib.util

    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.abspath(sys.prefix),
             os.path.dirname(os.path.realpath(sys.executable))}
    for name in packages:
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            paths.add(os.path.realpath(loc))
    # drop folders inside another listed one
    out = sorted(paths, key=len)
    return [p for i, p in enumerate(out) if not any(_under(p, q) for q in out[:i])]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def scrub_env(env: dict, allow: set | frozenset, secrets: tuple[str, ...] = ()) -> dict:
    """``env`` reduced to the names in ``allow`` (``"PREFIX_*"`` allows a prefix), without SECRET_NAMES and
    without any variable whose value contains one of ``secrets``."""
    prefixes = tuple(a[:-1] for a in allow if a.endswith("*"))
    out = {}
    for k, v in env.items():
        if k in SECRET_NAMES or not (k in allow or (prefixes and k.startswith(prefixes))):
            continue
        if any(s and s in str(v) for s in secrets):
            continue
        out[k] = str(v)
    return out


@dataclass
class Sandbox:
    """One workload's sandbox: run as ``uid``/``gid`` (``user`` for its groups), in ``cwd``."""

    uid: int
    gid: int
    user: str
    home: str
    cwd: str
    ro: list[str] = field(default_factory=list)  # extra read-only folders (same path inside)
    rw: list[tuple[str, str]] = field(default_factory=list)  # (host path, path inside), read-write
    hide: list[str] = field(default_factory=list)  # masked with an empty tmpfs if inside something shown
    share_ipc: bool = False  # CUDA MPS clients need the host's IPC namespace and /dev/shm
    packages: tuple[str, ...] = ()  # our packages the command imports (python_paths)
    # --- storage + environments (issue 15 C) ---
    ro_to: list[tuple[str, str]] = field(default_factory=list)  # (host path, path inside), read-only, after rw
    # --- end storage + environments ---

    def command(self, argv: list[str], info_fd: int | None = None) -> list[str]:
        if self.uid == 0 or self.gid == 0:
            raise ValueError("a sandbox never runs as uid or gid 0")
        a = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
             "--as-pid-1", "--new-session", "--hostname", "aistack"]
        if not self.share_ipc:
            a.append("--unshare-ipc")
        shown: list[str] = []
        made: set[str] = set()

        def parents(path):
            # bwrap creates missing parents of a mount point with the caller's umask (0700 under the
            # platform's umask 077: unreachable for the account); make them 0755 first.
            out = []
            d = os.path.dirname(path)
            while d not in ("/", "") and d not in made and not any(_under(d, s) for s in shown):
                out.insert(0, d)
                d = os.path.dirname(d)
            for d in out:
                made.add(d)
            return [x for d in out for x in ("--perms", "0755", "--dir", d)]

        for p in SYSTEM_RO:
            if os.path.isdir(p):
                a += ["--ro-bind", p, p]
                shown.append(p)
        for p in SYSTEM_LINKS:
            if os.path.islink(p):
                a += ["--symlink", os.readlink(p), p]
            elif os.path.isdir(p):
                a += ["--ro-bind", p, p]
                shown.append(p)
        a += ["--proc", "/proc", "--dev", "/dev", "--ro-bind-try", "/sys", "/sys",
              "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run"]
        for pattern in DEVICE_GLOBS:
            for dev in sorted(glob.glob(pattern)):
                a += ["--dev-bind", dev, dev]
        if self.share_ipc and os.path.isdir("/dev/shm"):
            a += ["--dev-bind", "/dev/shm", "/dev/shm"]
        for p in python_paths(self.packages) + [os.path.realpath(p) for p in self.ro]:
            if not any(_under(p, s) for s in shown) and os.path.exists(p):
                a += parents(p) + ["--ro-bind", p, p]
                shown.append(p)
        for h in self.hide:
            h = os.path.realpath(h)
            if any(_under(h, s) for s in shown) and os.path.isdir(h):
                a += ["--tmpfs", h]
        a += parents(self.home) + ["--bind", self.home, self.home]
        for src, dst in self.rw:
            a += parents(dst) + ["--bind", src, dst]
        # --- storage + environments (issue 15 C): datasets, the catalog's kernelspecs (read-only, last) ---
        for src, dst in self.ro_to:
            a += parents(dst) + ["--ro-bind", src, dst]
        # --- end storage + environments ---
        a += ["--chdir", self.cwd]
        if info_fd is not None:
            a += ["--info-fd", str(info_fd)]
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        a += ["--", setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
              "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        return a + list(argv)

    def launch(self, argv: list[str], env: dict, timeout: float = 30, **popen_kwargs) -> tuple[subprocess.Popen, int | None]:
        """Start ``argv`` in the sandbox; returns the bwrap process and the workload's host pid (None if
        the sandbox could not be set up: bwrap then says why on its stderr and exits non-zero)."""
        r, w = os.pipe()
        try:
            proc = subprocess.Popen(self.command(argv, info_fd=w), env=env, pass_fds=(w,), **popen_kwargs)
        finally:
            os.close(w)
        try:
            return proc, _read_child_pid(r, timeout)
        finally:
            os.close(r)


def _read_child_pid(fd: int, timeout: float) -> int | None:
    """bwrap writes ``{"child-pid": N, ...}`` to the info fd once the namespaces exist, then closes it."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return int(json.loads(data.decode())["child-pid"])
    except (ValueError, KeyError):
        return None


def open_regular(path: str, mode: str = "rb"):
    """Open a file a sandboxed workload could have replaced (its run files) for reading, as root: never
    through a symbolic link (O_NOFOLLOW) and only if it is a regular file (a FIFO would block, a device
    would read something else). Raises OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise
