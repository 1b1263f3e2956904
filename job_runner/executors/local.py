"""LocalExecutor: each attempt of a job is ``python -m job_runner.run_notebook`` (papermill) in its own
process group (its own session), bound to its slice by ``job_runner.binding.local.local_env`` (computed
from the stored assignment at start), its log streamed to a file.

Who runs it (``job_runner.binding.accounts.Isolation``, the same settings as the local spawner's):
- ``accounts`` mode (root): the job's user's own account, in a bubblewrap sandbox
  (``job_runner.binding.sandbox``): it sees the system, the Python environment, its home and its own run
  files (the attempt folder at ``/aistack/run``, the checkpoints at ``/aistack/checkpoints``), never the
  data folder, other jobs or other users; its own PID namespace, whose first process is the runner (its pid
  on this side, from bwrap, is what is recorded and signalled; when it ends, its kernels end with it).
- ``single-user`` mode: this service's account, as a plain child process.
Either way the environment is an allow-list (``sandbox.scrub_env``): never the service's token or a secret.
A local job needs no credential at all and gets none.

The job runs in the notebook's own folder in the user's home (the folder of its ``notebook_path``), with
``HOME`` the user's home, as in JupyterLab; ``working_folder = "copy"`` runs it in a copy of that folder
instead (jupyter-scheduler's input folder). The runner resolves the folder inside the sandbox, as the user.

Layout under ``jobs_dir``::

    <job id>/job.log                 the log of all attempts (appended by this service)
    <job id>/launch-<n>.json         this executor's record of attempt n (pid on this side, start time)
    <job id>/checkpoints/            AISTACK_CHECKPOINT_DIR, the same for every attempt (the user's)
    <job id>/attempt-<n>/            spec.json, input.ipynb, runner.json, progress.json,
                                     output.ipynb (saved after every cell), result.json (the user's)

The attempt folder belongs to the job's account, so this service reads files in it only through
``sandbox.open_regular`` (no symbolic links, regular files only) and never trusts a pid found in it: the
launch record it signals lives in the job's folder, which only the service can write. Runs survive a
restart of the service (they are not its process group): ``adopt`` finds them again through the launch
record, and a pid is trusted only with its recorded start time, so a reused pid is never mistaken for the run.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

from traitlets import CaselessStrEnum, Float, Integer, List, Unicode, default

from job_runner.binding.accounts import Isolation
from job_runner.binding.local import local_env
from job_runner.binding.sandbox import BASE_ALLOW, Sandbox, scrub_env
from job_runner.failures import INFRASTRUCTURE, failure
from job_runner.run_notebook import process_start_time, write_json_atomic
from job_runner.run_notebook import read_json as _read_json

from . import runfiles
from .base import FAILED, RUNNING, STARTING, ExecState, Executor, JobSpec

METRICS_FILE = "metrics.jsonl"  # experiments (issue 13): what job_runner.report writes in the run folder
STOP_FILE = "stop"  # experiments (issue 13): the service's stop marker there (a pruned / stopped trial)


def _alive(pid: int | None, start_time: str | None) -> bool:
    if not pid:
        return False
    st = process_start_time(pid)
    if st is None or (start_time is not None and st != start_time):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


class LocalExecutor(Executor):
    name = "local"

    jobs_dir = Unicode(help="Directory for the jobs' files (inputs, outputs, logs, checkpoints).").tag(config=True)

    @default("jobs_dir")
    def _jobs_dir_default(self):
        return os.path.abspath("aistack-jobs")

    runner_command = List(
        Unicode(),
        help="Command that runs one attempt; the attempt directory is appended. "
        "Default: this Python with `-m job_runner.run_notebook`.",
    ).tag(config=True)

    @default("runner_command")
    def _runner_default(self):
        return [sys.executable, "-m", "job_runner.run_notebook"]

    mps_pipe_directory = Unicode(
        "", help="CUDA_MPS_PIPE_DIRECTORY of jobs on a shared GPU (empty: the MPS default)."
    ).tag(config=True)
    kill_grace_s = Float(5.0, help="Seconds between SIGTERM and SIGKILL when a run is stopped.").tag(config=True)
    lost_after_s = Float(
        60.0, help="A launched attempt whose runner never reported its pid after this long counts as lost."
    ).tag(config=True)

    working_folder = CaselessStrEnum(
        ["notebook", "copy"], default_value="notebook",
        help="""Where a job runs: 'notebook' = the notebook's own folder in the user's home (what it reads
        beside it is there, what it writes stays there); 'copy' = a copy of that folder in the job's run files
        (jupyter-scheduler's input folder: the job cannot change the user's files).""",
    ).tag(config=True)
    copy_limit_mib = Integer(1024, help="working_folder 'copy': the largest folder (MiB) copied; a larger "
                             "one fails the job with a message.").tag(config=True)

    # --- storage + environments (issue 15 C): set by the service (aistack_hub.services.storage.install):
    # (tenant, user, account name | None, sandboxed) -> {"rw", "ro", "env"}; None: no tenant storage
    storage_mounts = None
    # --- end storage + environments ---

    # Inside the sandbox (accounts mode): where the attempt's run files and the checkpoints appear.
    RUN_DIR = "/aistack/run"
    CHECKPOINT_DIR = "/aistack/checkpoints"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._children: dict[int, subprocess.Popen] = {}
        self.isolation = Isolation(parent=self)
        problem = self.isolation.problem()
        if problem:  # the service's start-up error: never fall back to running jobs as this account
            raise RuntimeError(problem)
        self.isolation.check_home_root(self.jobs_dir, os.path.dirname(os.path.abspath(self.jobs_dir)))
        self.log.info("local jobs: isolation %s", self.isolation.describe())

    # paths
    def job_dir(self, job_id: int) -> str:
        return runfiles.job_dir(self.jobs_dir, job_id)

    def attempt_dir(self, job_id: int, attempt: int) -> str:
        return runfiles.attempt_dir(self.jobs_dir, job_id, attempt)

    def log_path(self, job_id: int) -> str:
        return runfiles.log_path(self.jobs_dir, job_id)

    def checkpoint_dir(self, job_id: int) -> str:
        return os.path.join(self.job_dir(job_id), "checkpoints")

    def launch_path(self, job_id: int, attempt: int) -> str:
        return os.path.join(self.job_dir(job_id), f"launch-{int(attempt)}.json")

    def _handle(self, job_id: int, attempt: int) -> dict | None:
        adir = self.attempt_dir(job_id, attempt)
        path = self.launch_path(job_id, attempt)
        launch = _read_json(path)
        if launch is None:
            try:  # a marker cut short (the service killed while writing it): launched, no pid known
                launch = {"launched_at": os.stat(path).st_mtime}
            except OSError:
                return None  # never launched
        return {"job_id": job_id, "attempt": attempt, "dir": adir, **launch}

    def _env(self, job: JobSpec, assignment: dict, account, checkpoints: str, run_dir: str = "") -> dict:
        """The job's whole environment: an allow-list of this process's, the binding, the job's facts."""
        env = scrub_env(os.environ, BASE_ALLOW)
        bindir = os.path.dirname(os.path.abspath(sys.executable))
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"])
        env.update(self.extra_env)
        env.update(local_env(assignment, mps_pipe_directory=self.mps_pipe_directory or None))
        env.update({
            "HOME": account.home, "USER": account.name, "LOGNAME": account.name,
            "AISTACK_USER": job.user, "AISTACK_TENANT": job.tenant,
            "AISTACK_JOB_ID": str(job.id),
            "AISTACK_JOB_ATTEMPT": str(job.attempt),
            "AISTACK_CHECKPOINT_DIR": checkpoints,
            "PYTHONUNBUFFERED": "1",
        })
        # --- experiments (issue 13): report() appends to the run folder's metrics file (read by read_metrics)
        env["AISTACK_METRICS_FILE"] = os.path.join(run_dir, METRICS_FILE)
        env["AISTACK_STOP_FILE"] = os.path.join(run_dir, STOP_FILE)  # write_stop_marker: report() raises
        # Whatever extra_env says: never this service's own token (the hub's) in a workload.
        return scrub_env(env, set(env), secrets=(os.environ.get("JUPYTERHUB_API_TOKEN", ""),))

    def _workdir(self, job: JobSpec) -> str:
        """The notebook's folder relative to the user's home ('' = the home); the runner resolves it."""
        path = (getattr(job, "notebook_path", None) or "").strip("/")
        folder = os.path.dirname(path)
        if not folder or "\0" in folder or ".." in folder.split("/"):
            return ""
        return folder

    async def start(self, job: JobSpec, assignment: dict) -> dict:
        existing = self._handle(job.id, job.attempt)
        if existing is not None:  # idempotent: this attempt was launched already
            return existing
        account = await asyncio.to_thread(self.isolation.account, job.user)
        await asyncio.to_thread(self.isolation.prepare_home, account)
        # --- storage + environments (issue 15 C): the tenant's folder, its datasets, its kernels ---
        mounts = {"rw": [], "ro": [], "env": {}}
        if self.storage_mounts is not None:
            mounts = await asyncio.to_thread(self.storage_mounts, job.tenant, job.user, account.name if account.switch
                                             else None, account.switch)
        # --- end storage + environments ---
        adir = self.attempt_dir(job.id, job.attempt)
        ckpt = self.checkpoint_dir(job.id)
        os.makedirs(self.job_dir(job.id), mode=0o700, exist_ok=True)
        os.makedirs(adir, mode=0o700, exist_ok=True)
        os.makedirs(ckpt, mode=0o700, exist_ok=True)
        sandboxed = account.switch
        run_dir = self.RUN_DIR if sandboxed else adir
        with open(os.path.join(adir, "input.ipynb"), "w") as f:
            f.write(job.notebook)
        write_json_atomic(os.path.join(adir, "spec.json"), {
            "job_id": job.id, "attempt": job.attempt, "parameters": job.parameters,
            "kernel_name": job.kernel_name,
            "output_link": f"jobs/{job.id}/output",
            "home": account.home, "workdir": self._workdir(job),
            "copy_input": self.working_folder == "copy", "copy_limit_mib": self.copy_limit_mib,
        })
        if sandboxed:  # the run files and checkpoints are the job's; the job's folder stays the service's
            for path in (adir, ckpt, os.path.join(adir, "input.ipynb"), os.path.join(adir, "spec.json")):
                os.chown(path, account.uid, account.gid)
        # The launch marker is written *before* the process exists: if the service dies in between,
        # a restart finds the marker and never launches the same attempt a second time; without a
        # pid after lost_after_s the attempt counts as lost (an infrastructure failure).
        launched_at = time.time()
        marker = self.launch_path(job.id, job.attempt)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return self._handle(job.id, job.attempt)
        with os.fdopen(fd, "w") as f:
            json.dump({"launched_at": launched_at, "sandbox": sandboxed}, f)

        env = self._env(job, assignment, account, self.CHECKPOINT_DIR if sandboxed else ckpt, run_dir)
        env.update(mounts["env"])  # storage + environments (issue 15 C)
        log = open(self.log_path(job.id), "ab")
        log.write(f"==> attempt {job.attempt} of job {job.id} starting at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        log.flush()
        argv = [*self.runner_command, run_dir]
        popen = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                     start_new_session=True,  # its own session and process group: cancel kills the group
                     close_fds=True)
        try:
            if sandboxed:
                box = Sandbox(account.uid, account.gid, account.name, account.home, cwd=account.home,
                              ro=list(self.isolation.extra_ro_paths),
                              rw=[(adir, self.RUN_DIR), (ckpt, self.CHECKPOINT_DIR)]
                              + ([(self.mps_pipe_directory, self.mps_pipe_directory)] if self.mps_pipe_directory else [])
                              + [tuple(x) for x in mounts["rw"]],  # storage (issue 15 C)
                              ro_to=[tuple(x) for x in mounts["ro"]],  # datasets, kernels (issue 15 C)
                              hide=[self.jobs_dir, os.path.dirname(os.path.abspath(self.jobs_dir))],
                              share_ipc=bool(self.mps_pipe_directory), packages=("job_runner",))
                proc, pid = await asyncio.to_thread(box.launch, argv, env, **popen)
            else:
                proc = subprocess.Popen(argv, cwd=adir, env=env, **popen)
                pid = proc.pid
        except OSError as e:
            write_json_atomic(os.path.join(adir, "result.json"),
                              {"state": FAILED, "failure": failure(INFRASTRUCTURE, f"could not start the runner: {e}")})
            return self._handle(job.id, job.attempt)
        finally:
            log.close()
        self._children[proc.pid] = proc
        # A waiter thread tells the loop the moment the run ends (no waiting for the next tick).
        threading.Thread(target=self._wait_child, args=(proc,), daemon=True, name=f"wait-job-{job.id}").start()
        if pid is None:  # bwrap could not set the sandbox up (it said why in the job's log)
            await asyncio.to_thread(proc.wait)
            write_json_atomic(os.path.join(adir, "result.json"), {"state": FAILED, "failure": failure(
                INFRASTRUCTURE, "the job's sandbox could not be set up (see the job's log)")})
            return self._handle(job.id, job.attempt)
        # Sandboxed, the workload is PID 1 of its namespace and a session leader: its pid here is its
        # process group too, and signalling it ends everything in there.
        record = {"launched_at": launched_at, "sandbox": sandboxed, "pid": pid, "pgid": pid,
                  "start_time": process_start_time(pid), "account": account.name}
        if sandboxed:
            try:  # the job's PID namespace: the run is over when no process is left in it
                record["pid_ns"] = os.readlink(f"/proc/{pid}/ns/pid")
            except OSError:
                pass
        write_json_atomic(marker, record)
        return self._handle(job.id, job.attempt)

    def _wait_child(self, proc):
        proc.wait()
        self._notify()

    def _reap(self, pid):
        proc = self._children.get(pid)
        if proc is not None and proc.poll() is not None:
            self._children.pop(pid, None)

    def _runner(self, handle: dict) -> dict:
        if handle.get("sandbox"):
            # never a pid from the job's own files: the job could name any process there
            return {"pid": handle.get("pid"), "pgid": handle.get("pgid"), "start_time": handle.get("start_time"),
                    "kernels": []}
        runner = _read_json(os.path.join(handle["dir"], "runner.json")) or {}
        if not runner.get("pid") and handle.get("pid"):
            runner = {"pid": handle["pid"], "pgid": handle.get("pgid"), "start_time": handle.get("start_time"), "kernels": []}
        return runner

    def _progress(self, handle):
        return _read_json(os.path.join(handle["dir"], "progress.json"))

    async def poll(self, handle: dict) -> ExecState:
        runner = self._runner(handle)
        pid = runner.get("pid")
        if pid:
            self._reap(pid)
        alive = _alive(pid, runner.get("start_time"))
        result = _read_json(os.path.join(handle["dir"], "result.json"))
        if result is None and not alive:
            # it may have written its result just before exiting
            result = _read_json(os.path.join(handle["dir"], "result.json"))
        progress = self._progress(handle)
        if result is not None:
            if alive:
                return ExecState(RUNNING, progress=progress)  # writing its last bytes; next poll
            return ExecState(result["state"], progress=progress, failure=result.get("failure"))
        if alive:
            return ExecState(RUNNING, progress=progress)
        if not pid and time.time() - float(handle.get("launched_at", 0)) < self.lost_after_s:
            return ExecState(STARTING)
        await self._kill_groups(runner, signal.SIGKILL)
        return ExecState(FAILED, progress=progress, failure=failure(
            INFRASTRUCTURE, "the runner process ended without a result (killed, or the machine restarted)"))

    async def _kill_groups(self, runner: dict, sig) -> list:
        """Signal the runner's process group and its kernels' groups; returns those still alive."""
        groups = []
        if runner.get("pid"):
            groups.append((runner["pid"], runner.get("pgid") or runner["pid"], runner.get("start_time")))
        for k in runner.get("kernels") or []:
            groups.append((k["pid"], k.get("pgid") or k["pid"], k.get("start_time")))
        alive = []
        for pid, pgid, st in groups:
            if _alive(pid, st):
                try:
                    os.killpg(pgid, sig)
                    alive.append((pid, st))
                except ProcessLookupError:
                    pass
                except PermissionError as e:
                    self.log.warning("cannot signal process group %s: %s", pgid, e)
        return alive

    async def cancel(self, handle: dict) -> None:
        runner = self._runner(handle)
        alive = await self._kill_groups(runner, signal.SIGTERM)
        deadline = time.time() + self.kill_grace_s
        while alive and time.time() < deadline:
            await asyncio.sleep(0.1)
            if runner.get("pid"):
                self._reap(runner["pid"])
            alive = [(p, st) for p, st in alive if _alive(p, st)]
        if alive:
            await self._kill_groups(self._runner(handle), signal.SIGKILL)
        if runner.get("pid"):
            self._reap(runner["pid"])

    async def adopt(self, job: JobSpec) -> dict | None:
        return self._handle(job.id, job.attempt)

    async def cleanup(self, handle: dict) -> None:
        # Leftover kernels (a runner killed hard leaves its kernel's session behind).
        await self._kill_groups(self._runner(handle), signal.SIGKILL)

    async def read_output(self, job: JobSpec) -> str | None:
        return await asyncio.to_thread(runfiles.read_output, self.jobs_dir, job.id, job.attempt)

    async def read_logs(self, job: JobSpec, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        got = await asyncio.to_thread(runfiles.read_log, self.jobs_dir, job.id, offset, limit)
        return got if got is not None else (b"", offset)

    # --- experiments (issue 13): the metrics file of an attempt (job_runner.report), read from an offset
    def read_metrics(self, job_id: int, attempt: int, offset: int = 0, limit: int = 4 << 20) -> tuple[bytes, int]:
        """Whole lines of ``metrics.jsonl`` from ``offset`` (blocking: call it off the event loop); (b"", offset)
        when there is nothing new or no file. Read through ``open_regular`` (the file is the job's)."""
        path = os.path.join(self.attempt_dir(job_id, attempt), METRICS_FILE)
        try:
            with runfiles.open_regular(path) as f:
                f.seek(offset)
                data = f.read(limit)
        except OSError:
            return b"", offset
        end = data.rfind(b"\n")
        if end < 0:
            return b"", offset
        return data[:end + 1], offset + end + 1

