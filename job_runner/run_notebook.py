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
        self.stopped_itself = False  # a cell ended by report()'s TrialStopped (experiments, issue 13)

    def record_kernels(self):
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
        self.record_kernels()
        s = self.state
        s["cells_total"] = total
        s["current_cell"] = index
        if s["first_cell_at"] is None:
            s["first_cell_at"] = time.time()
            _startup("kernel up, first cell starts")  # experiments (issue 13): where a trial's start goes
        s["updated_at"] = time.time()
        write_json_atomic(self.path, s)

    def cell_complete(self, index, total, last=False):
        if last or index + 1 >= total:  # experiments (issue 13): the notebook's work ends here
            _startup("last cell done", kind="end")
        s = self.state
        s["cells_total"] = total
        s["cells_done"] = max(s["cells_done"], index + 1)
        s["updated_at"] = time.time()
        write_json_atomic(self.path, s)


class _EarlyKernel:
    """The notebook's kernel, started before papermill is imported (experiments, issue 13: the kernel's own
    start, ~0.6 s idle and 1.5-2 s on a loaded machine, then overlaps papermill's import, ~0.3-1.5 s,
    instead of following it). The same kernel papermill would start: the job's kernel name (else the
    notebook's kernelspec, as papermill picks it), the notebook's folder as its cwd, this process's
    environment, the ``--HistoryManager.hist_file=:memory:`` nbclient adds. nbclient then runs the notebook
    on it and shuts it down as its own (``owns_km``), gracefully, as before."""

    def __init__(self, spec: dict, attempt_dir: str, cwd: str, progress: _Progress):
        self.km = None
        self.name = spec.get("kernel_name") or None
        if not self.name:
            nb = read_json(os.path.join(attempt_dir, "input.ipynb")) or {}
            self.name = ((nb.get("metadata") or {}).get("kernelspec") or {}).get("name")
        if not self.name:
            return  # papermill says why (no kernel name in the notebook)
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=self.name)
        args = ["--HistoryManager.hist_file=:memory:"] if km.ipykernel else []
        run_sync(km.start_kernel)(extra_arguments=args, cwd=cwd)
        self.km = km
        progress.record_kernels()  # a cancel from now on stops the kernel too

    def take(self, kernel_name: str):
        """The started manager for ``kernel_name`` (once), or None: nbclient starts its own then."""
        km, self.km = (self.km, None) if kernel_name == self.name else (None, self.km)
        return km

    def stop(self) -> None:
        """Shut the kernel down if nbclient never took it (a cancel or a failure before the first cell)."""
        km, self.km = self.km, None
        if km is None:
            return
        from jupyter_core.utils import run_sync
        try:
            run_sync(km.shutdown_kernel)(now=True)
        except Exception as e:  # noqa: BLE001 - the executor kills the recorded kernel's group anyway
            logging.warning("could not stop the kernel: %s", e)


def _register_engine(progress: _Progress, kernel: _EarlyKernel | None = None) -> str:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            start, complete, exception = nb_man.cell_start, nb_man.cell_complete, nb_man.cell_exception
            total = len(nb_man.nb.cells)
            failed = []

            def cell_start(cell, cell_index=None, **kw):
                start(cell, cell_index, **kw)
                progress.cell_start(cell_index, total)

            def cell_exception(cell, cell_index=None, **kw):
                failed.append(cell_index)  # papermill stops at this cell: its cell_complete is the last
                # experiments (issue 13): report() raised at the stop marker: the trial ended itself here
                progress.stopped_itself = getattr(kw.get("exception"), "ename", None) == "TrialStopped"
                exception(cell, cell_index, **kw)

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index, **kw)
                progress.cell_complete(cell_index, total, last=bool(failed))

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            nb_man.cell_exception = cell_exception
            # NBClientEngine.execute_managed_notebook (papermill 2.x), with the kernel started early
            kwargs = remove_args(["input_path"], **kwargs)
            final = merge_kwargs(remove_args(["timeout", "startup_timeout"], **kwargs),
                                 timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                                 startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                                 log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            km = kernel.take(kernel_name) if kernel is not None else None
            client = PapermillNotebookClient(nb_man, km=km, **final)
            client.owns_km = True  # shut down and cleaned up by nbclient at the end, as one it started
            return client.execute()

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
    # Without the package jsonschema skips that one check. The same for the other optional packages behind
    # jsonschema's format checks (durations through arrow, colours, URI templates, JSON pointers, host
    # names, RFC 3339 dates, RFC 3986 URIs: 80-190 ms of the runner's ~0.8 s of imports at load 5-7): the
    # runner never validates a format (nbformat's schema names none of these), the kernel is another process.
    for name in ("rfc3987_syntax", "isoduration", "webcolors", "uri_template", "jsonpointer", "fqdn",
                 "rfc3339_validator", "rfc3986_validator"):
        sys.modules.setdefault(name, None)
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
    kernel = None
    try:
        kernel = _EarlyKernel(spec, attempt_dir, cwd, progress)
        _startup("kernel process started")  # experiments (issue 13)
        import papermill

        engine = _register_engine(progress, kernel)
        _startup("papermill imported, waiting for the kernel")  # experiments (issue 13)
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
        _startup("notebook ended, kernel shut down", kind="end")  # experiments (issue 13)
    except _Cancelled:
        # --- experiments (issue 13): a trial that had ended itself at the stop marker (its cell raised
        # TrialStopped) and got the SIGTERM while its kernel was shutting down (the cancel that follows a prune
        # after stop_grace_s, when the kernel's exit stalls): its outcome is still the marker's
        if progress.stopped_itself and _stopped_by_marker(stop_file, result_path,
                                                          " (SIGTERM while its kernel shut down)"):
            return 143
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
    finally:
        if kernel is not None:
            kernel.stop()  # only a kernel nbclient never took (it shuts down the one it ran)
    if _stopped_by_marker(stop_file, result_path):  # experiments (issue 13): a trial that ended at should_stop()
        return 0
    write_json_atomic(result_path, {"state": "succeeded"})
    return 0


# --- experiments (issue 13): where the seconds from the job's process start to its first cell go (job log)
# and from its last cell to its end. Each line also carries the wall-clock time (epoch seconds), so that the
# benchmark can line it up with the job's times in the database (docs/experiments.md, "Where a trial's slot
# time goes").
def _startup(what: str, kind: str = "startup") -> None:
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            age = float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return
    logging.info("%s: %s, %.3f s after the runner process started (at %.3f)", kind, what, age, time.time())


# --- experiments (issue 13): a pruned / stopped trial ends as stopped (failure class "cancelled"), not failed
STOP_MARKER = "stop"


def _stopped_by_marker(stop_file: str, result_path: str, note: str = "") -> bool:
    try:
        with open(stop_file) as f:
            why = f.read(200).strip() or "stopped by the experiment"
    except OSError:
        return False
    logging.info("the trial stopped itself at the experiment's stop marker: %s%s", why, note)
    # stopped_itself: the controller keeps this outcome when the cancel after stop_grace_s reaches the run
    write_json_atomic(result_path, {"state": "failed", "failure": failure(CANCELLED, why, stopped_itself=True)})
    return True
# --- end experiments ---


if __name__ == "__main__":
    code = main()
    _startup("result written, runner exits", kind="end")  # experiments (issue 13)
    # Everything the run leaves is on disk (result.json, output.ipynb, progress.json) and its kernel is shut
    # down: exit without the interpreter's teardown (freeing papermill's, nbformat's, tornado's, zmq's
    # modules: 0.1-0.3 s measured on the shared 2 cores), since the job holds its slot until this process
    # is gone. The log (stdout, stderr) is flushed first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
