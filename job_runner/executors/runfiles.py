"""The run files of a job under an executor's ``jobs_dir`` (one layout for the local runner and for what
job pods send through the service; docs/jobs.md)::

    <job id>/job.log                    the log of all attempts (appended)
    <job id>/attempt-<n>/output.ipynb   the output notebook (saved after every cell)
    <job id>/attempt-<n>/progress.json, result.json

Reads are blocking file I/O (an output notebook may be 16 MiB and more): executors call them through
``asyncio.to_thread`` so that the event loop never waits on a disk.

What job pods send (KubernetesExecutor) goes through a run-file store: ``FileRunFiles`` (this folder, the
embedded deployment) or ``job_runner.db.runfiles.DBRunFiles`` (the database, which every service replica
reads: the cluster deployment); both have the interface of ``FileRunFiles``, chosen by
``AIStackService.run_files`` (docs/kubernetes.md, "Replicas").
"""
from __future__ import annotations

import os
import threading

# An attempt's folder may belong to the job's account (LocalExecutor in accounts mode): read its files
# only through open_regular (no symbolic link to a secret, no FIFO that blocks a thread).
from job_runner.binding.sandbox import open_regular


def job_dir(jobs_dir: str, job_id) -> str:
    return os.path.join(jobs_dir, str(int(job_id)))


def attempt_dir(jobs_dir: str, job_id, attempt) -> str:
    return os.path.join(job_dir(jobs_dir, job_id), f"attempt-{int(attempt)}")


def log_path(jobs_dir: str, job_id) -> str:
    return os.path.join(job_dir(jobs_dir, job_id), "job.log")


def output_path(jobs_dir: str, job_id, attempt) -> str | None:
    """The output notebook's path of the newest attempt (up to ``attempt``) that has one."""
    for n in range(int(attempt), 0, -1):
        path = os.path.join(attempt_dir(jobs_dir, job_id, n), "output.ipynb")
        if os.path.isfile(path):
            return path
    return None


def read_output(jobs_dir: str, job_id, attempt) -> str | None:
    """The output notebook of the newest attempt (up to ``attempt``) that has one."""
    for n in range(int(attempt), 0, -1):
        try:
            with open_regular(os.path.join(attempt_dir(jobs_dir, job_id, n), "output.ipynb"), "r") as f:
                return f.read()
        except OSError:
            continue
    return None


def open_output(jobs_dir: str, job_id, attempt):
    """(a binary file object, its size) of the newest output notebook, or None. The size is the open file's
    (fstat): ranges read from this one file stay consistent while a new version replaces the path."""
    path = output_path(jobs_dir, job_id, attempt) if jobs_dir else None
    if path is None:
        return None
    try:
        f = open_regular(path, "rb")
    except OSError:
        return None
    return f, os.fstat(f.fileno()).st_size


def read_at(f, offset: int, length: int) -> bytes:
    """``length`` bytes of ``f`` from ``offset`` (fewer at its end); ``f`` an open file, or a store's file
    with its own ``read_at`` (a version of a file in the database)."""
    if hasattr(f, "read_at"):
        return f.read_at(offset, length)
    return os.pread(f.fileno(), length, offset)


def tree_size(path: str) -> tuple[int, int]:
    """(files, bytes) under ``path`` (0, 0 if it is gone)."""
    files = size = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(base, name)).st_size
                files += 1
            except OSError:
                continue
    return files, size


def read_log(jobs_dir: str, job_id, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int] | None:
    """``limit`` bytes of the job's log from ``offset`` and the next offset; None if there is no log."""
    try:
        with open(log_path(jobs_dir, job_id), "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return None
    return data, offset + len(data)


def log_cut(data: bytes, size: int, max_bytes: int) -> bytes:
    """What of ``data`` a log of ``size`` bytes takes under a limit of ``max_bytes`` (0: no limit): all of
    it, the part that fits followed by one line saying the log was cut, or nothing once it was cut."""
    if max_bytes <= 0 or size + len(data) <= max_bytes:
        return data
    if size >= max_bytes:
        return b""
    note = f"\n[log cut at {max_bytes} bytes: the job's log limit (Limits.max_log_bytes)]\n".encode()
    return data[:max(0, max_bytes - size - len(note))] + note


class FileRunFiles:
    """The run files of jobs in ``jobs_dir`` (the layout above): the store of one service process."""

    kind = "files"

    def __init__(self, jobs_dir: str):
        self.jobs_dir = jobs_dir

    def _path(self, job_id, attempt, name: str) -> str:
        d = attempt_dir(self.jobs_dir, job_id, attempt)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, name)

    def put(self, job_id, attempt, name: str, data: bytes) -> None:
        """Replace a whole file (written aside, then renamed: a reader sees the old or the new one)."""
        path = self._path(job_id, attempt, name)
        tmp = f"{path}.tmp{os.getpid()}-{threading.get_ident()}"  # two threads writing at once: two names
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get(self, job_id, attempt, name: str) -> bytes | None:
        try:
            with open_regular(os.path.join(attempt_dir(self.jobs_dir, job_id, attempt), name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def append_log(self, job_id, data: bytes, max_bytes: int = 0) -> int:
        """Append to the job's log; with ``max_bytes`` it stops there (``log_cut``). Returns bytes written."""
        os.makedirs(job_dir(self.jobs_dir, job_id), exist_ok=True)
        with open(log_path(self.jobs_dir, job_id), "ab") as f:
            data = log_cut(data, f.tell(), max_bytes)
            f.write(data)
        return len(data)

    def read_log(self, job_id, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int] | None:
        return read_log(self.jobs_dir, job_id, offset, limit)

    def open_output(self, job_id, attempt):
        return open_output(self.jobs_dir, job_id, attempt)

    def read_output(self, job_id, attempt) -> str | None:
        return read_output(self.jobs_dir, job_id, attempt)
