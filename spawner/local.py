"""LocalGPUSpawner: single-user servers as local processes, pinned to their GPU slice.

Modelled on JupyterHub's ``LocalProcessSpawner``. Which account runs a server is
``job_runner.binding.accounts.Isolation``'s answer, the same settings as the local job executor's:

- ``accounts`` mode (default when the hub is root): the user's own unprivileged system account
  (``Isolation.account_prefix`` + name, created on first spawn), in a bubblewrap sandbox
  (``job_runner.binding.sandbox``): its own PID namespace, the system and the Python environment read-only,
  its home read-write, a private /tmp; the data folder, other users' homes and /root do not exist in there.
  The server is PID 1 of its namespace, and the pid JupyterHub stores is the server's own (from bwrap), so
  ``poll``/``stop`` signal the server itself and everything in the sandbox ends with it.
- ``single-user`` mode (the hub is not root): the hub's own account, as JupyterHub's ``LocalProcessSpawner``
  runs it (``--allow-root`` when that is root because an admin chose single-user mode).

Homes are ``Isolation.home_root/<user>``, outside the data folder (checked). The environment is JupyterHub's
(the server's own token, ``JUPYTERHUB_*``, ``Spawner.environment``) filtered by ``sandbox.scrub_env``: no
variable carries the hub's service token or a known secret.

The slice is bound by ``job_runner.binding.local.local_env`` (the one binding, shared with the local job
executor): ``CUDA_VISIBLE_DEVICES`` (GPU indices, UUIDs, or MIG device UUIDs from NVML) and, for shares, the
CUDA MPS client limits (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``), which
take effect when an MPS control daemon runs (``mps_pipe_directory``). CPU and memory are accounted by the scheduler and published as
``CPU_LIMIT``/``MEM_LIMIT``; a local process is not confined by cgroups.
"""
from __future__ import annotations

import asyncio
import os
import sys

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import CaselessStrEnum, Unicode, default

from job_runner.binding.accounts import Account, Isolation
from job_runner.binding.discovery import nvml_gpus
from job_runner.binding.local import device_ids, local_env
from job_runner.binding.sandbox import Sandbox, scrub_env

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


class SandboxedProcessSpawner(LocalProcessSpawner):
    """``LocalProcessSpawner`` whose process runs as the user's own account in a sandbox (accounts mode),
    or as the hub's account in the user's home (single-user mode). See the module docstring."""

    data_dir = Unicode(
        help="""The deployment's data directory (``aistack_hub.hubconfig.configure`` sets it; default
        ``.aistack`` in the hub's working directory): never visible in a sandbox, never holding homes.""",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath(".aistack")

    @default("cmd")
    def _default_cmd(self):
        # The hub's own interpreter: works from a virtualenv without it being on PATH.
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @property
    def isolation(self) -> Isolation:
        iso = self.__dict__.get("_isolation")
        if iso is None:
            iso = self.__dict__["_isolation"] = Isolation(parent=self)
        return iso

    @property
    def account(self) -> Account | None:
        """The account of the running (or starting) server; None before the first start."""
        return self.__dict__.get("_account")

    @property
    def home_dir(self) -> str:
        return self.isolation.home(self.user.name)

    def _prepare(self) -> Account:
        """Blocking: the checks, the account (created on first need) and its home."""
        self.isolation.check()
        self.isolation.check_home_root(self.data_dir)
        acct = self.isolation.account(self.user.name)
        self.isolation.prepare_home(acct)
        self.__dict__["_account"] = acct
        return acct

    def make_preexec_fn(self, name):
        home = self.home_dir

        def preexec():  # single-user mode only: no account switch
            os.chdir(home)

        return preexec

    def user_env(self, env):
        acct = self.account
        env["USER"] = acct.name if acct is not None else self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = self.isolation.shell or "/bin/bash"
        return env

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0 and not (self.account and self.account.switch):
            args.append("--allow-root")  # single-user mode chosen by an admin on a root hub
        return args

    async def move_certs(self, paths):
        return paths  # internal SSL is not used by the embedded default

    def get_env(self):
        """JupyterHub's environment for the server (its own token, ``JUPYTERHUB_*``, ``Spawner.environment``),
        without the hub's service token or any known secret, in both modes."""
        env = super().get_env()
        env.update(self.__dict__.get("_storage_env") or {})  # storage + environments (issue 15 C)
        return scrub_env(env, set(env), secrets=(getattr(self, "aistack_token", "") or "",))

    async def start(self):
        acct = await asyncio.to_thread(self._prepare)
        # --- storage + environments (issue 15 C): the tenant's folder, its datasets, its kernels ---
        mounts = await self._storage_mounts(acct)
        self.__dict__["_storage_env"] = dict(mounts.get("env") or {})
        # --- end storage + environments ---
        if not acct.switch:
            self.log.warning("%s: single-user mode: the server runs as the hub's account %r", self.user.name, acct.name)
            return await super().start()
        if self.port == 0:
            self.port = random_port()
        cmd = [*self.cmd, *self.get_args()]
        box = Sandbox(acct.uid, acct.gid, acct.name, acct.home, cwd=acct.home,
                      ro=list(self.isolation.extra_ro_paths),
                      rw=[(d, d) for d in self._shared_rw() if d] + [tuple(x) for x in mounts.get("rw") or []],
                      ro_to=[tuple(x) for x in mounts.get("ro") or []],  # storage + environments (issue 15 C)
                      hide=[self.data_dir], share_ipc=bool(getattr(self, "mps_pipe_directory", "")),
                      packages=("aistack_lab",))
        self.log.info("Spawning %s as %s in a sandbox", " ".join(cmd), acct.name)
        proc, pid = await asyncio.to_thread(box.launch, cmd, self.get_env(), start_new_session=True,
                                            **self.popen_kwargs)
        if pid is None:
            await asyncio.to_thread(proc.wait)
            raise RuntimeError(f"the server's sandbox could not be set up for {acct.name} (bwrap exited with "
                               f"{proc.returncode}; see the hub's log)")
        self.proc = proc
        self.pid = pid  # the server itself (PID 1 of its namespace): what poll and stop signal
        return (self.ip or "127.0.0.1", self.port)

    def _shared_rw(self) -> list[str]:
        return []

    # --- storage + environments (issue 15 C) ---
    async def _storage_mounts(self, acct: Account) -> dict:
        """The binds of the tenant's storage (none without a tenant: a plain process spawner)."""
        return {}
    # --- end storage + environments ---


class LocalGPUSpawner(GPUSliceSpawnerMixin, SandboxedProcessSpawner):
    """Local-process spawner with GPU slices from the aistack scheduler."""

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

    def _shared_rw(self) -> list[str]:
        return [self.mps_pipe_directory]  # MPS clients talk to the control daemon through its pipes

    # --- storage + environments (issue 15 C) ---
    async def _storage_mounts(self, acct: Account) -> dict:
        """The tenant's folder (read-write, or read-only over quota), its datasets (read-only) and its
        environments' kernelspecs, as the service prepares them (GET storage/mounts: the folder and the
        group made, the account added to the group). Without an answer the server starts without them."""
        if not self.tenant:
            return {}
        code, data = await self.service.call("GET", "storage/mounts", query={"tenant": self.tenant,
                                                                            "user": self.user.name})
        if code != 200 or not isinstance(data, dict):
            self.log.warning("%s: no tenant storage for %s (GET storage/mounts answered %s: %s)", self.user.name,
                             self.tenant, code, data)
            return {}
        if not acct.switch:  # single-user mode: no sandbox, the host paths
            data = {"rw": [], "ro": [], "env": {**data.get("env", {}), "AISTACK_TENANT_DIR": (data.get("rw") or
                    data.get("ro") or [["", ""]])[0][0]}}
        return data
    # --- end storage + environments ---

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
