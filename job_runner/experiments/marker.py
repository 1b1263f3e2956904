"""A local trial's run files seen from the service (issue 13): the size of its metrics file (has anything new
come? one ``lstat``) and the stop marker that ``job_runner.report`` looks for (a pruned / stopped trial ends
itself at its next ``report()``). Executors without a run folder here (pods) have no ``attempt_dir``: nothing
is written, the cancel request stops them."""
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


def write_stop(executor, job_id: int, attempt: int, why: str) -> bool:
    """Create the marker (blocking), never following or overwriting (O_EXCL|O_NOFOLLOW: the folder is the
    job's); False when there is no run folder here or it could not be written."""
    d = _dir(executor, job_id, attempt)
    if d is None:
        return False
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(os.path.join(d, STOP_FILE), flags, 0o644)
    except FileExistsError:
        return True
    except OSError:
        return False
    try:
        os.write(fd, why.encode()[:200])
    finally:
        os.close(fd)
    return True
