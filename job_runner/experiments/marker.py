"""A trial's run files seen from the service (issue 13): the size of its metrics file (has anything new
come? one ``lstat``) and the stop marker that ``job_runner.report`` looks for (a pruned / stopped trial ends
itself at its next ``report()``).

Where the marker goes: a local trial's run folder (``attempt_dir``, the executor's); a pod has no run folder
here, so its marker goes into the run-file store every replica reads (``ServiceContext.run_files``, name
``stop`` of the attempt), and the pod's next report to the service (``job_runner.pod``, every
``AISTACK_REPORT_INTERVAL`` s) is answered with it: the pod writes it into its own run folder, where
``report()`` finds it as in a local run."""
from __future__ import annotations

import os

METRICS_FILE = "metrics.jsonl"
STOP_FILE = "stop"


def _dir(executor, job_id: int, attempt: int) -> str | None:
    f = getattr(executor, "attempt_dir", None)
    return f(job_id, attempt) if f is not None and attempt else None


def metrics_size(executor, job_id: int, attempt: int) -> int:
    d = _dir(executor, job_id, attempt)
    try:
        return os.lstat(os.path.join(d, METRICS_FILE)).st_size if d else 0
    except OSError:
        return 0


def write_stop(executor, job_id: int, attempt: int, why: str, run_files=None) -> str | None:
    """Create the marker (blocking): ``"file"`` in a local run folder, never following or overwriting
    (O_EXCL|O_NOFOLLOW: the folder is the job's); ``"store"`` in the run-file store for a pod (its next report
    fetches it); None when neither is possible (the cancel request alone stops the trial)."""
    d = _dir(executor, job_id, attempt)
    if d is None:
        if run_files is None or not attempt or getattr(executor, "attempt_dir", None) is not None:
            return None
        try:
            run_files.put(job_id, attempt, STOP_FILE, why.encode()[:200])
        except Exception:  # noqa: BLE001 - the cancel after the grace stops it anyway
            return None
        return "store"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(os.path.join(d, STOP_FILE), flags, 0o644)
    except FileExistsError:
        return "file"
    except OSError:
        return None
    try:
        os.write(fd, why.encode()[:200])
    finally:
        os.close(fd)
    return "file"


def read_stop(run_files, job_id: int, attempt: int) -> str | None:
    """The marker a pod's attempt has in the store (what its report is answered with), or None."""
    data = run_files.get(job_id, attempt, STOP_FILE) if run_files is not None else None
    return data.decode("utf-8", "replace")[:200] if data else None
