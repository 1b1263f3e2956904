"""The run files of jobs in the database (table ``run_files``): the store every service replica reads.

Same interface as ``job_runner.executors.runfiles.FileRunFiles`` (the embedded deployment's folder):
whole files (``put``/``get``: output.ipynb, progress.json, result.json of one attempt), the job's log
(``append_log``/``read_log``), and the newest output notebook opened for ranged reads (``open_output``).
Files are cut into chunks of ``CHUNK_BYTES`` so that a ranged read of a 100 MiB output reads only the
rows it needs. All calls are blocking: callers run them in a thread (``asyncio.to_thread``, the offload).
"""
from __future__ import annotations

import time

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from job_runner.executors.runfiles import log_cut

from .models import RunFile

CHUNK_BYTES = 1 << 20
LOG = "job.log"  # stored as attempt 0: one log for all attempts, as in the folder layout
OUTPUT = "output.ipynb"


class DBFile:
    """One version of a stored file, read in ranges (``read_at``); a replace meanwhile makes reads return
    b"" (the version is gone) rather than mix two versions."""

    def __init__(self, store: "DBRunFiles", job_id: int, attempt: int, version: int):
        self.store, self.key, self.version = store, (int(job_id), int(attempt), OUTPUT), version

    def read_at(self, offset: int, length: int) -> bytes:
        return self.store._read_range(self.key, self.version, offset, length)

    def close(self) -> None:
        self.store = None


class DBRunFiles:
    """Run files in the job service's database (``job_runner.db.Database``)."""

    kind = "database"

    def __init__(self, db, chunk_bytes: int = CHUNK_BYTES):
        self.db, self.chunk_bytes = db, chunk_bytes

    def _chunks(self, data: bytes, start: int = 0):
        for at in range(0, len(data), self.chunk_bytes) or [0]:
            yield start + at, data[at:at + self.chunk_bytes]

    def put(self, job_id, attempt, name: str, data: bytes) -> None:
        """Replace a whole file (a new version written, the older ones dropped, in one transaction)."""
        key = (int(job_id), int(attempt), name)
        version = time.time_ns()
        with self.db.session() as s:
            s.add_all(RunFile(job_id=key[0], attempt=key[1], name=name, version=version, pos=o, size=len(c),
                              data=c) for o, c in self._chunks(data))
            s.flush()
            s.execute(delete(RunFile).where(*self._where(key), RunFile.version != version))

    @staticmethod
    def _where(key):
        return RunFile.job_id == key[0], RunFile.attempt == key[1], RunFile.name == key[2]

    def _newest(self, s, key):
        return s.execute(select(func.max(RunFile.version)).where(*self._where(key))).scalar()

    def get(self, job_id, attempt, name: str) -> bytes | None:
        key = (int(job_id), int(attempt), name)
        with self.db.read() as s:
            version = self._newest(s, key)
            if version is None:
                return None
            rows = s.execute(select(RunFile.data).where(*self._where(key), RunFile.version == version)
                             .order_by(RunFile.pos)).scalars()
            return b"".join(rows)

    def append_log(self, job_id, data: bytes, max_bytes: int = 0) -> int:
        """Append to the job's log (rows at growing offsets; two appends at once: the loser retries); with
        ``max_bytes`` the log stops there, ended by one line saying so (``log_cut``). Returns bytes written."""
        key = (int(job_id), 0, LOG)
        for tries in range(5):
            try:
                with self.db.session() as s:
                    end = int(s.execute(select(func.coalesce(func.max(RunFile.pos + RunFile.size), 0))
                                        .where(*self._where(key))).scalar())
                    data = log_cut(data, end, max_bytes)
                    if data:
                        s.add_all(RunFile(job_id=key[0], attempt=0, name=LOG, version=0, pos=o, size=len(c),
                                          data=c) for o, c in self._chunks(data, end))
                return len(data)
            except IntegrityError:
                if tries == 4:
                    raise

    def read_log(self, job_id, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int] | None:
        key = (int(job_id), 0, LOG)
        with self.db.read() as s:
            if s.execute(select(RunFile.pos).where(*self._where(key)).limit(1)).first() is None:
                return None
        data = self._read_range(key, 0, offset, limit)
        return data, offset + len(data)

    def _read_range(self, key, version: int, offset: int, length: int) -> bytes:
        end = offset + length
        with self.db.read() as s:
            rows = s.execute(select(RunFile.pos, RunFile.data).where(
                *self._where(key), RunFile.version == version, RunFile.pos < end,
                RunFile.pos + RunFile.size > offset).order_by(RunFile.pos)).all()
        out, at = [], offset
        for o, data in rows:
            if o > at:  # a gap (should not happen): stop where the bytes stop being contiguous
                break
            piece = bytes(data)[at - o:end - o]
            out.append(piece)
            at += len(piece)
        return b"".join(out)

    def _output_version(self, s, job_id, attempt):
        return s.execute(select(RunFile.attempt, RunFile.version, func.sum(RunFile.size)).where(
            RunFile.job_id == int(job_id), RunFile.name == OUTPUT, RunFile.attempt <= int(attempt),
            RunFile.attempt > 0).group_by(RunFile.attempt, RunFile.version)
            .order_by(RunFile.attempt.desc(), RunFile.version.desc()).limit(1)).first()

    def open_output(self, job_id, attempt):
        """(a file with ``read_at``/``close``, its size) of the newest output notebook up to ``attempt``."""
        with self.db.read() as s:
            got = self._output_version(s, job_id, attempt)
        if got is None:
            return None
        return DBFile(self, job_id, got[0], got[1]), int(got[2] or 0)

    def read_output(self, job_id, attempt) -> str | None:
        got = self.open_output(job_id, attempt)
        if got is None:
            return None
        f, size = got
        return f.read_at(0, size).decode()
