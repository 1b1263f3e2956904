"""Retention of finished jobs: a periodic cleanup that removes old finished jobs with their files.

A job that ended (succeeded, failed, cancelled) more than ``finished_job_days`` ago is removed: its row and
its events, its run files (``<jobs_dir>/<id>/``: log, output notebooks, checkpoints), and the notebook
snapshot once no job points at it any more. Each cleanup is recorded in ``retention_runs`` (what it removed,
how long it took, an error if any): ``GET retention`` answers it and the admin page shows it.

The leader runs it (``Controller.tick`` calls ``maybe_start``) in a thread of its own, so that removing many
files never delays a scheduling pass; rows go in batches of ``batch_size`` (a short write lock each).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time

from sqlalchemy import delete, exists, select
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from job_runner.db import FINAL_STATES, Job, JobEvent, Notebook, RetentionRun, utcnow
from job_runner.executors import runfiles


class JobRetention(LoggingConfigurable):
    """How long finished jobs and their files are kept (docs/limits.md, "Retention")."""

    finished_job_days = Float(
        30.0, help="Finished jobs (succeeded, failed, cancelled) are removed this many days after they ended, "
        "with their events, run files (log, outputs) and their notebook once no job uses it. 0: kept forever."
    ).tag(config=True)
    interval_s = Float(3600.0, help="Seconds between cleanups (the scheduling leader runs them; the first one "
                       "soon after it starts).").tag(config=True)
    batch_size = Integer(500, help="Jobs removed per database transaction.").tag(config=True)
    keep_runs = Integer(200, help="Cleanup reports kept (retention_runs rows).").tag(config=True)

    def __init__(self, db, jobs_dir: str | None, replica: str = "", **kwargs):
        super().__init__(**kwargs)
        self.db = db
        self.jobs_dir = jobs_dir or ""
        self.replica = replica
        self._last: float | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------- schedule
    def maybe_start(self) -> bool:
        """Start a cleanup in the background if one is due and none runs (cheap: the loop calls it each pass)."""
        if self.finished_job_days <= 0 or (self._thread is not None and self._thread.is_alive()):
            return False
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        self._thread = threading.Thread(target=self._run_logged, name="retention", daemon=True)
        self._thread.start()
        return True

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception:  # noqa: BLE001 - the next interval tries again; the run's row has the error
            self.log.exception("retention cleanup failed")

    # ------------------------------------------------------------------------------- the run
    def run(self, now: dt.datetime | None = None) -> dict:
        """One cleanup (blocking): removes what is older than the cut-off; returns and records the counts."""
        t0 = time.perf_counter()
        now = now or utcnow()
        cutoff = now - dt.timedelta(days=self.finished_job_days)
        out = {"jobs_removed": 0, "notebooks_removed": 0, "files_removed": 0, "bytes_freed": 0}
        error = None
        try:
            while True:
                with self.db.session() as s:
                    ids = list(s.execute(select(Job.id).where(Job.state.in_(FINAL_STATES), Job.finished_at < cutoff)
                                         .order_by(Job.id).limit(self.batch_size)).scalars())
                    if ids:
                        s.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
                        s.execute(delete(Job).where(Job.id.in_(ids)))
                if not ids:
                    break
                out["jobs_removed"] += len(ids)
                for job_id in ids:  # after the rows are gone: a crash here leaves files the orphan sweep takes
                    self._remove_files(runfiles.job_dir(self.jobs_dir, job_id), out)
            self._remove_orphan_dirs(cutoff, out)
            with self.db.session() as s:
                res = s.execute(delete(Notebook).where(
                    Notebook.used_at < cutoff, ~exists().where(Job.notebook_sha == Notebook.sha256)))
                out["notebooks_removed"] = res.rowcount or 0
        except Exception as e:  # noqa: BLE001 - recorded, then raised for the log
            error = f"{type(e).__name__}: {e}"[:2000]
            raise
        finally:
            out["seconds"] = round(time.perf_counter() - t0, 3)
            self._record(now, cutoff, out, error)
        if out["jobs_removed"] or out["notebooks_removed"] or out["files_removed"]:
            self.log.info("retention: removed %d finished job(s) older than %s, %d notebook(s), %d file(s) "
                          "(%.1f MiB) in %.1f s", out["jobs_removed"], cutoff.isoformat(timespec="seconds"),
                          out["notebooks_removed"], out["files_removed"], out["bytes_freed"] / 2**20, out["seconds"])
        return out

    def _remove_files(self, path: str, out: dict) -> None:
        if not self.jobs_dir or not os.path.isdir(path):
            return
        files, size = runfiles.tree_size(path)
        shutil.rmtree(path, ignore_errors=True)
        out["files_removed"] += files
        out["bytes_freed"] += size

    def _remove_orphan_dirs(self, cutoff: dt.datetime, out: dict) -> None:
        """Run-file folders of jobs the database no longer has, untouched since the cut-off."""
        if not self.jobs_dir or not os.path.isdir(self.jobs_dir):
            return
        limit = cutoff.replace(tzinfo=dt.timezone.utc).timestamp()
        candidates = {}
        with os.scandir(self.jobs_dir) as it:
            for entry in it:
                if entry.name.isascii() and entry.name.isdigit() and entry.is_dir(follow_symlinks=False):
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime < limit:
                            candidates[int(entry.name)] = entry.path
                    except OSError:
                        continue
        if not candidates:
            return
        with self.db.read() as s:
            ids = list(candidates)
            known = set()
            for i in range(0, len(ids), 500):
                known.update(s.execute(select(Job.id).where(Job.id.in_(ids[i:i + 500]))).scalars())
        for job_id, path in candidates.items():
            if job_id not in known:
                self._remove_files(path, out)

    def _record(self, now, cutoff, out: dict, error: str | None) -> None:
        try:
            with self.db.session() as s:
                s.add(RetentionRun(at=now, replica=self.replica, cutoff=cutoff, error=error, **out))
                s.flush()
                old = list(s.execute(select(RetentionRun.id).order_by(RetentionRun.id.desc())
                                     .offset(self.keep_runs)).scalars())
                if old:
                    s.execute(delete(RetentionRun).where(RetentionRun.id.in_(old)))
        except Exception as e:  # noqa: BLE001 - the report is not worth failing the cleanup for
            self.log.warning("retention: could not record the run: %s", e)
