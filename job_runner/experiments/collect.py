"""Collect new metric lines of running (and just finished) jobs: the local run folder's metrics file
(``LocalExecutor.read_metrics``) for every job, the job's log for ``name=value`` lines when its experiment
says ``metrics_collector: "stdout"`` (Katib's StdOut collector). Pods send theirs (POST .../pod/metrics)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from job_runner.db import ACTIVE_STATES, Job, utcnow
from job_runner.db.experiments import EXP_RUNNING, Experiment
from job_runner.executors.base import JobSpec

from . import ingest, marker


class Watch(dict):
    """(job id, attempt) of running trials -> metrics bytes read; true also while any experiment runs (its
    trials may be queued or just submitted: their ends are looked for too)."""

    experiments_running = False

    def __bool__(self) -> bool:
        return self.experiments_running or len(self) > 0


class Collector:
    def __init__(self, db, executor, io, after_end_s: float = 120.0):
        self.db, self.executor, self.io, self.after_end_s = db, executor, io, after_end_s
        self._trial_jobs: set = set()
        self._experiments_running = False
        self.watch: Watch = Watch()
        self._pass_started = None  # when the last pass began reading (utcnow); trial ends after it are new

    def changed(self) -> bool:
        """Has a running trial's metrics file grown past what was read (one ``lstat`` each), or has a
        trial's job ended since the last pass began (one query on the finished_at index: its slot is free,
        the pass queues the next trial now instead of at its next interval)? Blocking: call it off the loop."""
        if any(marker.metrics_size(self.executor, j, a) > off for (j, a), off in list(self.watch.items())):
            return True
        since = self._pass_started
        if since is None or not self.watch:
            return False
        with self.db.read() as s:
            ended = s.execute(select(Job.id).where(Job.finished_at >= since,
                                                   Job.group_id.like("experiment-%")).limit(1)).first()
        return ended is not None

    def _to_collect(self) -> list:
        self._pass_started = utcnow()  # before anything is read: an end from now on starts another pass
        cut = self._pass_started - dt.timedelta(seconds=self.after_end_s)
        with self.db.read() as s:
            jobs = s.execute(select(Job.id, Job.attempt, Job.group_id, Job.state).where(
                Job.attempt > 0, (Job.state.in_(ACTIVE_STATES)) | (Job.finished_at > cut))).all()
            stdout = {}
            self._experiments_running = False
            for e in s.execute(select(Experiment.id, Experiment.spec).where(Experiment.state == EXP_RUNNING)):
                self._experiments_running = True
                if e.spec.get("metrics_collector") == "stdout":
                    stdout[f"experiment-{e.id}"] = {e.spec["objective"]["metric"], *e.spec.get("metrics", [])}
        self._trial_jobs = {(j.id, j.attempt) for j in jobs if j.state in ACTIVE_STATES
                            and (j.group_id or "").startswith("experiment-")}
        return [(j.id, j.attempt, stdout.get(j.group_id)) for j in jobs]

    async def collect(self) -> int:
        """New points into job_metrics (with their cursors, one transaction); returns how many."""
        io, ex = self.io, self.executor
        jobs = await io(self._to_collect)
        if not jobs:
            self.watch = Watch()
            self.watch.experiments_running = self._experiments_running
            return 0
        keys = [(j, a, "file") for j, a, _ in jobs] + [(j, 0, "stdout") for j, _, names in jobs if names]
        cur = await io(ingest.cursors, self.db, keys)
        batches, watch = [], Watch()
        watch.experiments_running = self._experiments_running
        for job_id, attempt, names in jobs:
            if hasattr(ex, "read_metrics"):
                off, _ = cur[(job_id, attempt, "file")]
                data, end = await io(ex.read_metrics, job_id, attempt, off)
                if (job_id, attempt) in self._trial_jobs:
                    watch[(job_id, attempt)] = end
                if data:
                    batches.append((job_id, attempt, ingest.parse_jsonl(data), "file", end, None))
            if names:
                off, state = cur[(job_id, 0, "stdout")]
                spec = JobSpec(id=job_id, name="", user="", tenant="", profile="", attempt=attempt, notebook="")
                data, end = await ex.read_logs(spec, off)
                if data:
                    pts = ingest.parse_stdout(data.decode("utf-8", "replace"), names, state)
                    batches.append((job_id, attempt, pts, "stdout", end, state))
        self.watch = watch
        return await io(ingest.ingest, self.db, batches) if batches else 0
