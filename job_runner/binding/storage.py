"""Tenant storage ("data buckets") and environments on one machine: the folders, groups, mounts and the
usage scan that the local spawner's servers and the local executor's jobs share (docs/storage.md).

- A tenant's folder is ``TenantStorage.root/<tenant>``, owned by root and the tenant's own system group
  (``group_prefix`` + tenant, created with ``groupadd`` as ``accounts.py`` creates users; a member's account
  is added with ``usermod -aG`` before its first workload), mode ``2770`` (setgid: what a member creates
  belongs to the group, so every member can read it; nobody else can even list it).
- A dataset is ``datasets_root/<name>`` (root's, ``0755``), mounted **read-only** into the workloads of the
  tenants it is published to; unpublished datasets are not in their sandboxes at all.
- Inside a sandbox the tenant's folder appears at ``mount_path`` (``/shared/<tenant>``) and each dataset at
  ``dataset_mount_path`` (``/datasets/<name>``); ``$AISTACK_TENANT_DIR`` / ``$AISTACK_DATASETS`` say where.
- Environments of kind ``python`` become kernelspecs under ``environments_dir/<tenant>/kernels/`` (the
  tenant's catalog, on ``$JUPYTER_PATH`` in its sandboxes) and ``environments_dir/all/kernels/`` (the
  service's kernel check).
- Usage is measured (``scan_usage``: allocated bytes like ``du``, hard links once), not enforced by the
  filesystem; ``over_quota = "read-only"`` mounts an over-quota tenant's folder read-only into *new*
  workloads. ``quota_support`` says whether the filesystem could enforce project quotas.

This module imports nothing of ours (layer 1). Blocking: callers run it off their event loop.
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field

from traitlets import CaselessStrEnum, Float, Integer, Unicode, default
from traitlets.config import Configurable

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_lock = threading.Lock()


class StorageError(RuntimeError):
    """A tenant folder, group or dataset cannot be provided (the message says why)."""


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise StorageError(f"{what} {name!r} must be 1-63 lower-case letters, digits, '.', '_' or '-'")
    return name


@dataclass
class Mounts:
    """What a workload gets: read-write and read-only binds (host path, path inside) and variables."""

    rw: list = field(default_factory=list)
    ro: list = field(default_factory=list)
    env: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rw": [list(x) for x in self.rw], "ro": [list(x) for x in self.ro], "env": dict(self.env)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Mounts":
        d = d or {}
        return cls([tuple(x) for x in d.get("rw") or []], [tuple(x) for x in d.get("ro") or []], dict(d.get("env") or {}))


class TenantStorage(Configurable):
    """Where tenants' folders, datasets and environments live on this machine, and how they are guarded."""

    root = Unicode(help="""Folder of the tenants' folders (root/<tenant>, each 2770 root:<tenant group>).
        Must lie outside the data folder and the homes. Default: /var/lib/aistack/storage as root, else
        ~/aistack-storage.""").tag(config=True)

    @default("root")
    def _root_default(self):
        return "/var/lib/aistack/storage" if os.geteuid() == 0 else os.path.expanduser("~/aistack-storage")

    datasets_root = Unicode(help="Folder of the published datasets (datasets_root/<name>). Default: "
                                 "<root>/../datasets.").tag(config=True)

    @default("datasets_root")
    def _datasets_default(self):
        return os.path.join(os.path.dirname(os.path.abspath(self.root)), "datasets")

    environments_dir = Unicode(help="Folder of the environments' kernelspecs (<dir>/<tenant>/kernels/...). "
                                    "Default: <root>/../environments.").tag(config=True)

    @default("environments_dir")
    def _envs_default(self):
        return os.path.join(os.path.dirname(os.path.abspath(self.root)), "environments")

    group_prefix = Unicode("aistack-t-", help="Prefix of the tenants' system groups (tenant 'vision' -> "
                                              "'aistack-t-vision'). Must be non-empty.").tag(config=True)
    mount_path = Unicode("/shared/{tenant}", help="Where the tenant's folder appears in its servers and jobs "
                                                  "(embedded sandbox and Kubernetes pods alike).").tag(config=True)
    dataset_mount_path = Unicode("/datasets/{name}", help="Where a published dataset appears (read-only)."
                                 ).tag(config=True)
    default_quota_gib = Float(100.0, help="Storage quota of a tenant without its own (GiB; 0 = none).").tag(config=True)
    over_quota = CaselessStrEnum(["warn", "read-only"], default_value="read-only", help="""What an
        over-quota tenant gets: 'warn' = shown on the admin page and in GET storage only; 'read-only' = also its
        folder mounted read-only into new servers and jobs until usage is below the quota again (running
        workloads keep writing: the filesystem does not enforce it).""").tag(config=True)
    usage_cache_s = Float(60.0, help="Seconds a measured usage is reused before the folder is scanned again."
                          ).tag(config=True)
    scan_max_entries = Integer(2_000_000, help="Most files one usage scan visits (more: the figure is marked "
                                               "partial, a lower bound).").tag(config=True)

    # ------------------------------------------------------------------ names and paths
    def tenant_dir(self, tenant: str) -> str:
        return os.path.join(os.path.abspath(self.root), check_name(tenant, "tenant"))

    def dataset_dir(self, name: str) -> str:
        return os.path.join(os.path.abspath(self.datasets_root), check_name(name, "dataset"))

    def group_name(self, tenant: str) -> str:
        name = self.group_prefix + check_name(tenant, "tenant")
        if len(name) <= 32:  # groupadd's limit; longer: shortened plus 8 hex digits of its SHA-256
            return name
        return name[:23] + "-" + hashlib.sha256(tenant.encode()).hexdigest()[:8]

    def inside(self, tenant: str) -> str:
        return self.mount_path.format(tenant=tenant)

    def kernels_path(self, tenant: str) -> str:
        """The tenant's Jupyter data folder (its ``kernels/`` holds the catalog's kernelspecs)."""
        return os.path.join(os.path.abspath(self.environments_dir), check_name(tenant, "tenant"))

    # ------------------------------------------------------------------ groups and folders
    def ensure_group(self, tenant: str) -> int:
        """The tenant's group id (root: created with groupadd on first need; not root: our own gid)."""
        if os.geteuid() != 0:
            return os.getegid()
        name = self.group_name(tenant)
        with _lock:
            try:
                return grp.getgrnam(name).gr_gid
            except KeyError:
                pass
            run = subprocess.run([shutil.which("groupadd") or "/usr/sbin/groupadd", name], capture_output=True, text=True)
            try:
                return grp.getgrnam(name).gr_gid
            except KeyError:
                raise StorageError(f"could not create the group {name!r}: {run.stderr.strip() or run.returncode}") from None

    def add_member(self, tenant: str, account: str) -> bool:
        """Put ``account`` into the tenant's group (True when it is a member now). Not root: nothing to do."""
        if os.geteuid() != 0:
            return True
        name = self.group_name(tenant)
        gid = self.ensure_group(tenant)
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            return False
        with _lock:
            if entry.pw_gid == gid or account in grp.getgrnam(name).gr_mem:
                return True
            run = subprocess.run([shutil.which("usermod") or "/usr/sbin/usermod", "-aG", name, account],
                                 capture_output=True, text=True)
            if account not in grp.getgrnam(name).gr_mem:
                raise StorageError(f"could not add {account!r} to {name!r}: {run.stderr.strip() or run.returncode}")
        return True

    def remove_member(self, tenant: str, account: str) -> None:
        if os.geteuid() == 0:
            subprocess.run([shutil.which("gpasswd") or "/usr/bin/gpasswd", "-d", account, self.group_name(tenant)],
                           capture_output=True, text=True)

    def prepare(self, tenant: str) -> str:
        """The tenant's folder, created if missing: root:<group>, 2770 (setgid). The root folder is 0755."""
        path = self.tenant_dir(tenant)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.chmod(os.path.dirname(path), 0o755)
        gid = self.ensure_group(tenant)
        try:
            os.mkdir(path, 0o770)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{path} is not a folder")
        if os.geteuid() == 0 and (st.st_uid != 0 or st.st_gid != gid):
            os.chown(path, 0, gid)
        if stat.S_IMODE(os.lstat(path).st_mode) != 0o2770:
            os.chmod(path, 0o2770)
        return path

    def prepare_dataset(self, name: str) -> str:
        path = self.dataset_dir(name)
        os.makedirs(path, mode=0o755, exist_ok=True)
        for d in (os.path.dirname(path), path):  # whatever the process's umask (the platform's is 077)
            os.chmod(d, 0o755)
        return path

    # ------------------------------------------------------------------ mounts
    def mounts(self, tenant: str, datasets: list[str] = (), read_only: bool = False, sandboxed: bool = True) -> Mounts:
        """The binds of a workload of ``tenant`` (``sandboxed``: paths inside are ``mount_path`` etc.; not
        sandboxed, single-user mode: the host paths, and only the variables matter)."""
        m = Mounts()
        host = self.prepare(tenant)
        inside = self.inside(tenant) if sandboxed else host
        (m.ro if read_only else m.rw).append((host, inside))
        m.env["AISTACK_TENANT_DIR"] = inside
        shown = []
        for name in sorted(set(datasets)):
            src = self.dataset_dir(name)
            if os.path.isdir(src):
                dst = self.dataset_mount_path.format(name=name) if sandboxed else src
                m.ro.append((src, dst))
                shown.append(dst)
        m.env["AISTACK_DATASETS"] = os.pathsep.join(shown)
        kernels = self.kernels_path(tenant)
        if os.path.isdir(kernels):
            m.ro.append((kernels, kernels))
            m.env["JUPYTER_PATH"] = kernels
        if read_only:
            m.env["AISTACK_TENANT_DIR_READONLY"] = "over quota"
        return m


# ---------------------------------------------------------------------- environments as kernelspecs
def write_kernelspecs(storage: TenantStorage, catalog: dict[str, list[dict]]) -> dict[str, str]:
    """Materialise the catalog: ``catalog`` maps tenant -> its environments (dicts with ``name``,
    ``display_name``, ``python``, ``env``); every ``python`` environment becomes a kernelspec
    ``aistack-<name>`` in the tenant's folder and in ``all/``; stale ones of ours are removed. Returns
    {environment name: kernel name}."""
    base = os.path.abspath(storage.environments_dir)
    made: dict[str, str] = {}
    wanted: dict[str, set] = {}
    for tenant, envs in list(catalog.items()) + [("all", [e for es in catalog.values() for e in es])]:
        kdir = os.path.join(base, tenant if tenant == "all" else check_name(tenant, "tenant"), "kernels")
        os.makedirs(kdir, mode=0o755, exist_ok=True)
        for d in (base, os.path.dirname(kdir), kdir):
            os.chmod(d, 0o755)
        names = wanted.setdefault(kdir, set())
        for e in envs:
            if not e.get("python"):
                continue
            kname = kernel_name_of(e)
            names.add(kname)
            made[e["name"]] = kname
            spec = {"argv": [e["python"], "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": e.get("display_name") or e["name"], "language": "python",
                    "env": {"AISTACK_ENVIRONMENT": e["name"], **(e.get("env") or {})},
                    "metadata": {"aistack": {"environment": e["name"]}}}
            folder = os.path.join(kdir, kname)
            os.makedirs(folder, mode=0o755, exist_ok=True)
            tmp = os.path.join(folder, f".kernel.json.{os.getpid()}")
            with open(tmp, "w") as f:
                json.dump(spec, f, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(folder, "kernel.json"))
    for kdir, names in wanted.items():
        for old in os.listdir(kdir):
            if old.startswith("aistack-") and old not in names:
                shutil.rmtree(os.path.join(kdir, old), ignore_errors=True)
    return made


def kernel_name_of(env: dict) -> str | None:
    """The kernel a job of this environment runs: its own kernelspec name, or ours for a python path."""
    if env.get("kernel_name"):
        return env["kernel_name"]
    return f"aistack-{env['name']}" if env.get("python") else None


# ---------------------------------------------------------------------- usage
def scan_usage(path: str, max_entries: int = 2_000_000) -> dict:
    """Allocated bytes (``st_blocks * 512``, each hard-linked inode once, symbolic links not followed),
    files and folders under ``path``; ``partial`` when ``max_entries`` stopped the walk."""
    seen: set = set()
    total = files = dirs = entries = 0
    partial = False
    stack = [path]
    started = time.monotonic()
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                entries += 1
                if entries > max_entries:
                    partial = True
                    stack.clear()
                    break
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    dirs += 1
                    stack.append(e.path)
                elif st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    files += 1
                else:
                    files += 1
                total += st.st_blocks * 512
    return {"bytes": total, "files": files, "dirs": dirs, "partial": partial,
            "scan_s": round(time.monotonic() - started, 4), "measured_at": time.time()}


class UsageCache:
    """The last scan per folder, reused for ``ttl`` seconds (one scan at a time per folder)."""

    def __init__(self, ttl: float, max_entries: int):
        self.ttl, self.max_entries = ttl, max_entries
        self._got: dict[str, dict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, path: str, fresh: bool = False) -> dict:
        with self._lock:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            got = self._got.get(path)
            if got is None or fresh or time.time() - got["measured_at"] >= self.ttl:
                got = scan_usage(path, self.max_entries) if os.path.isdir(path) else \
                    {"bytes": 0, "files": 0, "dirs": 0, "partial": False, "scan_s": 0.0, "measured_at": time.time()}
                self._got[path] = got
            return dict(got)

    def cached(self, path: str) -> dict | None:
        got = self._got.get(path)
        return dict(got) if got else None


def quota_support(path: str) -> str:
    """Whether the filesystem holding ``path`` could enforce a per-folder quota (project quotas), in words."""
    try:
        out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--target", path], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    fstype, _, options = out.partition(" ")
    if "prjquota" in options or "pquota" in options:
        return f"{fstype} mounted with project quotas: enforceable (not configured by AIStack yet): measured"
    if fstype in ("xfs", "ext4"):
        return f"{fstype} without the prjquota mount option: measured, not enforced"
    return f"{fstype or 'unknown filesystem'}: no project quotas: measured, not enforced"
