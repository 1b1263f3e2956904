"""LocalGPUSpawner: single-user servers as local processes, pinned to their GPU slice.

Modelled on JupyterHub's ``LocalProcessSpawner`` / ``SimpleLocalProcessSpawner``. Which account runs
the servers (``run_as``):

- ``"auto"`` (default): the hub's own account when the hub is not root; when the hub runs as root, one
  unprivileged account (``unprivileged_user``, created with ``useradd --system`` if missing) so that no
  notebook runs as root. Users get separate home directories under ``home_dir_template`` but share that
  account: fine for trying it out and for one trusted team, not an isolation boundary between tenants
  (use ``"system"`` or the Kubernetes deployment for that).
- ``"system"``: each user runs as the system account of the same name (JupyterHub's LocalProcessSpawner).
- ``"hub"``: always the hub's account (even root; ``--allow-root`` is added then). Tests and benchmarks only.

The slice is bound by ``job_runner.binding.local.local_env`` (the one binding, shared with the local job
executor): ``CUDA_VISIBLE_DEVICES`` (GPU indices, UUIDs, or MIG device UUIDs from NVML) and, for shares, the
CUDA MPS client limits (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``), which
take effect when an MPS control daemon runs (``mps_pipe_directory``). CPU and memory are accounted by the scheduler and published as
``CPU_LIMIT``/``MEM_LIMIT``; a local process is not confined by cgroups.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, CaselessStrEnum, Unicode, default

from job_runner.binding.discovery import nvml_gpus
from job_runner.binding.local import device_ids, local_env

from .mixin import GPUSliceSpawnerMixin

_nvml_cache: dict = {}


def _nvml_inventory() -> list[dict]:
    """NVML's GPUs (cached for the hub's life; MIG devices change only by an admin's action)."""
    if "gpus" not in _nvml_cache:
        try:
            _nvml_cache["gpus"] = nvml_gpus()[0]
        except RuntimeError:
            _nvml_cache["gpus"] = []
    return _nvml_cache["gpus"]


class LocalGPUSpawner(GPUSliceSpawnerMixin, LocalProcessSpawner):
    """Local-process spawner with GPU slices from the aistack scheduler."""

    run_as = CaselessStrEnum(
        ["auto", "system", "hub"],
        default_value="auto",
        help="""Which account runs the servers: "auto" (hub's account, or `unprivileged_user` when the hub
        is root), "system" (the user's own system account), "hub" (always the hub's account).""",
    ).tag(config=True)

    unprivileged_user = Unicode(
        "aistack",
        help="Account that runs the servers when the hub is root and run_as is \"auto\".",
    ).tag(config=True)

    create_unprivileged_user = Bool(
        True, help="Create `unprivileged_user` (useradd --system) when it does not exist."
    ).tag(config=True)

    data_dir = Unicode(
        help="""The deployment's data directory (``aistack_hub.hubconfig.configure`` sets it; default
        ``.aistack`` in the hub's working directory).""",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath(".aistack")

    home_dir_template = Unicode(
        "{data_dir}/homes/{username}",
        help="""Home directory of each user unless run_as is "system" ({data_dir}, {username}).
        Created on first spawn, owned by the account that runs the server.""",
    ).tag(config=True)

    gpu_id_mode = CaselessStrEnum(
        ["index", "uuid"],
        default_value="index",
        help="""How CUDA_VISIBLE_DEVICES names GPUs: by index, or by UUID when the inventory knows it
        (robust against index reordering). MIG slices always use the MIG device UUID when NVML has it.""",
    ).tag(config=True)

    mps_pipe_directory = Unicode(
        "",
        help="""CUDA_MPS_PIPE_DIRECTORY of a running MPS control daemon; when set, share slices become MPS
        clients whose thread percentage and pinned memory limits are enforced.""",
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self):
        # The hub's own interpreter: works from a virtualenv without it being on PATH.
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    # ------------------------------------------------------------------ accounts and homes
    @property
    def account(self) -> pwd.struct_passwd | None:
        """The account the server runs as (None = the hub's own account, no setuid)."""
        if self.run_as == "system":
            return pwd.getpwnam(self.user.name)
        if self.run_as == "auto" and os.geteuid() == 0:
            acct = self._unprivileged_account()
            blocked = unreachable_paths(self.cmd[0])
            if blocked:
                # E.g. Python installed under /root (mode 700): the unprivileged account cannot even start
                # the interpreter. Run as the hub's account rather than not at all, and say how to fix it.
                _warn_once(self.log, f"notebook servers run as root, not as {acct.pw_name!r}: {blocked[0]} is "
                                     f"not reachable for other accounts (chmod o+x it, or install Python outside "
                                     f"it, or set LocalGPUSpawner.run_as)")
                return None
            return acct
        return None

    def _unprivileged_account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.unprivileged_user)
        except KeyError:
            if not self.create_unprivileged_user:
                raise
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", nologin,
                        self.unprivileged_user], check=True, capture_output=True)
        self.log.info("created the unprivileged account %r for notebook servers", self.unprivileged_user)
        return pwd.getpwnam(self.unprivileged_user)

    @property
    def home_dir(self) -> str:
        if self.run_as == "system":
            return pwd.getpwnam(self.user.name).pw_dir
        return self.home_dir_template.format(data_dir=self.data_dir, username=self.user.name)

    def prepare_home(self) -> str:
        """Create the home (and make the path to it traversable for the server's account)."""
        home = self.home_dir
        os.makedirs(home, 0o700, exist_ok=True)
        acct = self.account
        if acct is not None and self.run_as != "system":
            os.chown(home, acct.pw_uid, acct.pw_gid)
            parent = os.path.dirname(home)
            # The homes folder is reachable (x) but not listable by the server account.
            os.chmod(parent, 0o711)
            up = os.path.dirname(parent)
            if os.stat(up).st_mode & 0o001 == 0:
                os.chmod(up, os.stat(up).st_mode | 0o001)
            # Every folder above must be traversable by the server's account, or chdir fails obscurely.
            path = up
            while True:
                path = os.path.dirname(path)
                st = os.stat(path)
                if not (st.st_mode & 0o001 or (st.st_uid == acct.pw_uid and st.st_mode & 0o100)):
                    raise RuntimeError(
                        f"the notebook servers' account {acct.pw_name!r} cannot reach {home}: {path} is not "
                        f"traversable (chmod o+x {path}, or move the data folder, or set LocalGPUSpawner.run_as)")
                if path == os.path.dirname(path):
                    break
        return home

    def make_preexec_fn(self, name):
        acct = self.account
        home = self.home_dir

        def preexec():
            if acct is not None:
                os.setgid(acct.pw_gid)
                try:
                    os.initgroups(acct.pw_name, acct.pw_gid)
                except PermissionError:
                    pass
                os.setuid(acct.pw_uid)
            os.chdir(home)

        return preexec

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    def get_args(self):
        args = super().get_args()
        if self.account is None and os.geteuid() == 0:
            args.append("--allow-root")
        return args

    async def move_certs(self, paths):
        return paths  # internal SSL is not used by the embedded default

    # ------------------------------------------------------------------ GPU binding
    def slice_binding(self, assignment: dict | None) -> dict:
        """The environment that confines the server to its slice: the one local binding
        (``job_runner.binding.local.local_env``), with device ids by index, UUID or MIG device from NVML."""
        asg = assignment or {}
        gpus = _nvml_inventory() if asg.get("mig") or self.gpu_id_mode == "uuid" else []
        ids = device_ids(asg, mode=self.gpu_id_mode, gpus=gpus)
        if asg.get("mig") and ids == [str(asg["mig"][0])]:
            self.log.warning("no MIG device at GPU %s slot %s found by NVML; pinning the whole GPU index",
                             asg["mig"][0], asg["mig"][2])
        return local_env(asg, ids=ids, mps_pipe_directory=self.mps_pipe_directory or None)

    def get_env(self):
        env = super().get_env()
        env.update(self.slice_binding((self.allocation or {}).get("assignment")))
        return env

    # ------------------------------------------------------------------ start
    async def start(self):
        self.prepare_home()
        return await super().start()


_warned: set = set()


def _warn_once(log, message: str):
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def unreachable_paths(executable: str) -> list[str]:
    """Folders or files that keep an unprivileged account from running ``executable`` (resolved through
    symlinks) with this Python's packages: a folder needs o+x, the interpreter o+x, the packages o+r."""
    import jupyterhub

    exe = os.path.realpath(shutil.which(executable) or executable)
    targets = [(exe, 0o001), (os.path.realpath(os.path.dirname(jupyterhub.__file__)), 0o005)]
    blocked = []
    for target, need in targets:
        path = target
        while True:
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
            if not os.stat(path).st_mode & 0o001:
                blocked.append(path)
        if os.stat(target).st_mode & need != need:
            blocked.append(target)
    return sorted(set(blocked), key=len)


def account_group(acct: pwd.struct_passwd) -> str:
    return grp.getgrgid(acct.pw_gid).gr_name
