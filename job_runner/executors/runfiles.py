"""The run files of a job under an executor's ``jobs_dir`` (one layout for the local runner and for what
job pods send through the service; docs/jobs.md)::

    <job id>/job.log                    the log of all attempts (appended)
    <job id>/attempt-<n>/output.ipynb   the output notebook (saved after every cell)
    <job id>/attempt-<n>/progress.json, result.json

Reads are blocking file I/O (an output notebook may be 16 MiB and more): executors call them through
``asyncio.to_thread`` so that the event loop never waits on a disk.
"""
from __future__ import annotations

import os


def job_dir(jobs_dir: str, job_id) -> str:
    return os.path.join(jobs_dir, str(int(job_id)))


def attempt_dir(jobs_dir: str, job_id, attempt) -> str:
    return os.path.join(job_dir(jobs_dir, job_id), f"attempt-{int(attempt)}")


def log_path(jobs_dir: str, job_id) -> str:
    return os.path.join(job_dir(jobs_dir, job_id), "job.log")


def read_output(jobs_dir: str, job_id, attempt) -> str | None:
    """The output notebook of the newest attempt (up to ``attempt``) that has one."""
    for n in range(int(attempt), 0, -1):
        try:
            with open(os.path.join(attempt_dir(jobs_dir, job_id, n), "output.ipynb")) as f:
                return f.read()
        except OSError:
            continue
    return None


def read_log(jobs_dir: str, job_id, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int] | None:
    """``limit`` bytes of the job's log from ``offset`` and the next offset; None if there is no log."""
    try:
        with open(log_path(jobs_dir, job_id), "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return None
    return data, offset + len(data)
