"""LocalExecutor: each attempt of a job is ``python -m job_runner.run_notebook`` (papermill) in its own
process group (its own session), bound to its slice by ``job_runner.binding.local.local_env`` (computed
from the stored assignment at start), its log streamed to a file. It runs in its attempt directory.

Layout under ``jobs_dir``::

    <job id>/job.log                 the log of all attempts (appended)
    <job id>/checkpoints/            AISTACK_CHECKPOINT_DIR, the same for every attempt
    <job id>/attempt-<n>/            spec.json, input.ipynb, launch.json, runner.json, progress.json,
                                     output.ipynb (saved after every cell), result.json

Runs survive a restart of the service (they are not its process group): ``adopt`` finds them again
through ``launch.json``/``runner.json``, and a pid is trusted only with its recorded start time, so a
reused pid is never mistaken for the run.
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

from traitlets import Float, List, Unicode, default

from job_runner.binding.local import local_env
from job_runner.failures import INFRASTRUCTURE, failure
from job_runner.run_notebook import process_start_time, write_json_atomic
from job_runner.run_notebook import read_json as _read_json

from . import runfiles
from .base import FAILED, RUNNING, STARTING, ExecState, Executor, JobSpec


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

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._children: dict[int, subprocess.Popen] = {}

    # paths
    def job_dir(self, job_id: int) -> str:
        return runfiles.job_dir(self.jobs_dir, job_id)

    def attempt_dir(self, job_id: int, attempt: int) -> str:
        return runfiles.attempt_dir(self.jobs_dir, job_id, attempt)

    def log_path(self, job_id: int) -> str:
        return runfiles.log_path(self.jobs_dir, job_id)

    def checkpoint_dir(self, job_id: int) -> str:
        return os.path.join(self.job_dir(job_id), "checkpoints")

    def _handle(self, job_id: int, attempt: int) -> dict | None:
        adir = self.attempt_dir(job_id, attempt)
        launch = _read_json(os.path.join(adir, "launch.json"))
        if launch is None:
            return None
        return {"job_id": job_id, "attempt": attempt, "dir": adir, **launch}

    async def start(self, job: JobSpec, assignment: dict) -> dict:
        existing = self._handle(job.id, job.attempt)
        if existing is not None:  # idempotent: this attempt was launched already
            return existing
        adir = self.attempt_dir(job.id, job.attempt)
        os.makedirs(adir, exist_ok=True)
        os.makedirs(self.checkpoint_dir(job.id), exist_ok=True)
        with open(os.path.join(adir, "input.ipynb"), "w") as f:
            f.write(job.notebook)
        write_json_atomic(os.path.join(adir, "spec.json"), {
            "job_id": job.id, "attempt": job.attempt, "parameters": job.parameters,
            "kernel_name": job.kernel_name,
            "output_link": f"jobs/{job.id}/output",
        })
        # The launch marker is written *before* the process exists: if the service dies in between,
        # a restart finds the marker and never launches the same attempt a second time; without a
        # runner.json after lost_after_s the attempt counts as lost (an infrastructure failure).
        launched_at = time.time()
        marker = os.path.join(adir, "launch.json")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return self._handle(job.id, job.attempt)
        with os.fdopen(fd, "w") as f:
            json.dump({"launched_at": launched_at}, f)

        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(local_env(assignment, mps_pipe_directory=self.mps_pipe_directory or None))
        env.update({
            "AISTACK_JOB_ID": str(job.id),
            "AISTACK_JOB_ATTEMPT": str(job.attempt),
            "AISTACK_CHECKPOINT_DIR": self.checkpoint_dir(job.id),
            "PYTHONUNBUFFERED": "1",
        })
        log = open(self.log_path(job.id), "ab")
        log.write(f"==> attempt {job.attempt} of job {job.id} starting at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [*self.runner_command, adir],
                cwd=adir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: cancel kills the group
                close_fds=True,
            )
        except OSError as e:
            write_json_atomic(os.path.join(adir, "result.json"),
                              {"state": FAILED, "failure": failure(INFRASTRUCTURE, f"could not start the runner: {e}")})
            return self._handle(job.id, job.attempt)
        finally:
            log.close()
        self._children[proc.pid] = proc
        # A waiter thread tells the loop the moment the run ends (no waiting for the next tick).
        threading.Thread(target=self._wait_child, args=(proc,), daemon=True, name=f"wait-job-{job.id}").start()
        write_json_atomic(marker, {"launched_at": launched_at, "pid": proc.pid, "pgid": proc.pid,
                                   "start_time": process_start_time(proc.pid)})
        return self._handle(job.id, job.attempt)

    def _wait_child(self, proc):
        proc.wait()
        self._notify()

    def _reap(self, pid):
        proc = self._children.get(pid)
        if proc is not None and proc.poll() is not None:
            self._children.pop(pid, None)

    def _runner(self, handle: dict) -> dict:
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
