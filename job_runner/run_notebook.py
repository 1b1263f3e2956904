"""Run one attempt of a notebook job with papermill: ``python -m job_runner.run_notebook ATTEMPT_DIR``.

The attempt directory holds ``spec.json`` (written by the executor) and receives:
  ``runner.json``    this process's pid and the kernels' process groups (for cancel and re-adoption)
  ``progress.json``  per-cell progress, rewritten when a cell starts or completes
  ``output.ipynb``   the output notebook, saved by papermill after every cell
  ``result.json``    the outcome: {"state": "succeeded"} or {"state": "failed", "failure": {...}}
Logs (papermill's log with the cells' output) go to stdout/stderr, which the executor sends to a file.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

from job_runner.binding.sandbox import open_regular
from job_runner.failures import CANCELLED, INFRASTRUCTURE, classify_exception, failure, locate_cell_error


def read_json(path: str):
    """A JSON file of a run, or None while it is missing or half-written. Run files may belong to the job's
    account: never read through a symbolic link or from anything but a regular file."""
    try:
        with open_regular(path, "r") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json_atomic(path: str, data, fsync: bool = False) -> None:
    """Write-then-rename: readers see the old or the new file, never half of one. No fsync by default:
    these files must survive a killed process (the page cache does), and a crashed machine loses the
    runs anyway."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _child_pids(pid: int) -> list[int]:
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


class _Progress:
    """Writes progress.json from papermill's cell hooks, and records the kernels' process groups."""

    def __init__(self, attempt_dir: str):
        self.path = os.path.join(attempt_dir, "progress.json")
        self.runner_path = os.path.join(attempt_dir, "runner.json")
        self.state = {"cells_total": 0, "cells_done": 0, "current_cell": None, "first_cell_at": None,
                      "updated_at": time.time()}
        self._kernels_recorded = False

    def _record_kernels(self):
        if self._kernels_recorded:
            return
        # jupyter_client starts the kernel in a new session: its pgid is its pid. Record it so that
        # cancel can stop the kernel too, even if this runner is SIGKILLed first.
        kernels = []
        for pid in _child_pids(os.getpid()):
            try:
                kernels.append({"pid": pid, "pgid": os.getpgid(pid), "start_time": process_start_time(pid)})
            except OSError:
                pass
        if kernels:
            with open(self.runner_path) as f:
                runner = json.load(f)
            runner["kernels"] = kernels
            write_json_atomic(self.runner_path, runner)
            self._kernels_recorded = True

    def cell_start(self, index, total):
        self._record_kernels()
        s = self.state
        s["cells_total"] = total
        s["current_cell"] = index
        if s["first_cell_at"] is None:
            s["first_cell_at"] = time.time()
            _startup("kernel up, first cell starts")  # experiments (issue 13): where a trial's start goes
        s["updated_at"] = time.time()
        write_json_atomic(self.path, s)

    def cell_complete(self, index, total):
        s = self.state
        s["cells_total"] = total
        s["cells_done"] = max(s["cells_done"], index + 1)
        s["updated_at"] = time.time()
        write_json_atomic(self.path, s)


def _register_engine(progress: _Progress) -> str:
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            start, complete = nb_man.cell_start, nb_man.cell_complete
            total = len(nb_man.nb.cells)

            def cell_start(cell, cell_index=None, **kw):
                start(cell, cell_index, **kw)
                progress.cell_start(cell_index, total)

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index, **kw)
                progress.cell_complete(cell_index, total)

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("aistack", ProgressEngine)
    return "aistack"


class _Cancelled(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Cancelled()


def _point_at_output_cell(fail: dict, output: str, link: str | None) -> None:
    """Name the failed cell as the user sees it ("In [3]") and point cell_index and link at it in the
    *output* notebook (papermill adds cells there: the injected parameters and an error banner)."""
    if fail.get("class") != "cell_error":
        return
    try:
        with open(output) as f:
            nb = json.load(f)
    except (OSError, ValueError):
        return
    locate_cell_error(fail, nb, link)


class _FolderError(Exception):
    pass


def _folder_size(path: str, limit: int) -> int:
    total = 0
    for base, dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
            if total > limit:
                return total
    return total


def enter_workdir(spec: dict, attempt_dir: str) -> str:
    """Where the notebook runs: the notebook's folder under the user's home (``spec["workdir"]``, relative
    to ``spec["home"]``), the home if that folder is gone, or (``copy_input``) a copy of it in the run files.
    Resolved here, as the job's account inside its sandbox: a link cannot lead the service anywhere, and a
    path that leaves the home falls back to the home. Without ``home`` (a job pod): the current folder."""
    home = spec.get("home")
    if not home:
        return os.getcwd()
    home = os.path.realpath(home)
    folder = os.path.realpath(os.path.join(home, spec.get("workdir") or ""))
    if not (folder == home or folder.startswith(home + os.sep)) or not os.path.isdir(folder):
        logging.warning("the notebook's folder %r is not in the home (any more): running in %s",
                        spec.get("workdir"), home)
        folder = home
    if spec.get("copy_input"):
        import shutil

        limit = int(spec.get("copy_limit_mib") or 1024) << 20
        if _folder_size(folder, limit) > limit:
            raise _FolderError(f"the input folder {folder} is larger than {limit >> 20} MiB "
                               "(LocalExecutor.copy_limit_mib): not copied")
        copy = os.path.join(attempt_dir, "input-folder")
        shutil.copytree(folder, copy, symlinks=True, dirs_exist_ok=True)
        folder = copy
    os.chdir(folder)
    return folder


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # --- experiments (issue 13): jsonschema (imported by nbformat, for papermill) builds rfc3987_syntax's
    # lark grammar at import when that package is installed (7.0 s of papermill's 9.4 s import, measured
    # here at load 6 on 2 cores), in every job, for an "iri" format check nbformat's schema never uses.
    # Without the package jsonschema skips that one check.
    sys.modules.setdefault("rfc3987_syntax", None)
    attempt_dir = os.path.abspath(argv[0])
    # --- experiments (issue 13): where job_runner.report writes (the kernel inherits it; a pod's runner sends it)
    os.environ.setdefault("AISTACK_METRICS_FILE", os.path.join(attempt_dir, "metrics.jsonl"))
    # the service's stop marker (a pruned / stopped trial): report() raises TrialStopped once it exists
    stop_file = os.environ.setdefault("AISTACK_STOP_FILE", os.path.join(attempt_dir, STOP_MARKER))
    # --- end experiments ---
    with open(os.path.join(attempt_dir, "spec.json")) as f:
        spec = json.load(f)
    write_json_atomic(os.path.join(attempt_dir, "runner.json"), {
        "pid": os.getpid(), "pgid": os.getpgrp(), "start_time": process_start_time(os.getpid()), "kernels": [],
    })
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _startup("runner up (Python started, its imports done)")  # experiments (issue 13)
    signal.signal(signal.SIGTERM, _on_sigterm)
    result_path = os.path.join(attempt_dir, "result.json")
    progress = _Progress(attempt_dir)
    output = os.path.join(attempt_dir, "output.ipynb")
    try:
        cwd = enter_workdir(spec, attempt_dir)
    except (OSError, _FolderError) as e:
        logging.error("job failed: %s", e)
        write_json_atomic(result_path, {"state": "failed", "failure": failure(INFRASTRUCTURE, str(e))})
        return 1
    logging.info("running in %s", cwd)
    try:
        import papermill

        engine = _register_engine(progress)
        _startup("papermill imported, starting the kernel")  # experiments (issue 13)
        papermill.execute_notebook(
            os.path.join(attempt_dir, "input.ipynb"),
            output,
            parameters=spec.get("parameters") or {},
            engine_name=engine,
            kernel_name=spec.get("kernel_name") or None,
            log_output=True,
            progress_bar=False,
            request_save_on_cell_execute=True,
            start_timeout=spec.get("start_timeout", 60),
            execution_timeout=spec.get("cell_timeout"),
            cwd=cwd,
        )
    except _Cancelled:
        write_json_atomic(result_path, {"state": "failed", "failure": failure(CANCELLED, "stopped by SIGTERM")})
        return 143
    except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
        # --- experiments (issue 13): the trial stopped itself at the service's stop marker (report())
        if _stopped_by_marker(stop_file, result_path):
            return 0
        # --- end experiments ---
        fail = classify_exception(exc, output_link=spec.get("output_link"))
        _point_at_output_cell(fail, output, spec.get("output_link"))
        logging.error("job failed: %s", fail["message"])
        write_json_atomic(result_path, {"state": "failed", "failure": fail})
        return 1
    if _stopped_by_marker(stop_file, result_path):  # experiments (issue 13): a trial that ended at should_stop()
        return 0
    write_json_atomic(result_path, {"state": "succeeded"})
    return 0


# --- experiments (issue 13): where the seconds from the job's process start to its first cell go (job log)
def _startup(what: str) -> None:
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            age = float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return
    logging.info("startup: %s, %.2f s after the runner process started", what, age)


# --- experiments (issue 13): a pruned / stopped trial ends as stopped (failure class "cancelled"), not failed
STOP_MARKER = "stop"


def _stopped_by_marker(stop_file: str, result_path: str) -> bool:
    try:
        with open(stop_file) as f:
            why = f.read(200).strip() or "stopped by the experiment"
    except OSError:
        return False
    logging.info("the trial stopped itself at the experiment's stop marker: %s", why)
    write_json_atomic(result_path, {"state": "failed", "failure": failure(CANCELLED, why)})
    return True
# --- end experiments ---


if __name__ == "__main__":
    sys.exit(main())
