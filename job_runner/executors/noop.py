"""NoopExecutor: admits and "runs" jobs without running anything (throughput benchmarks, dry runs)."""
from __future__ import annotations

import time

from traitlets import Float

from .base import RUNNING, SUCCEEDED, ExecState, Executor, JobSpec


class NoopExecutor(Executor):
    name = "noop"
    duration_s = Float(0.0, help="How long each job seems to run before it succeeds.").tag(config=True)

    async def start(self, job: JobSpec, assignment: dict) -> dict:
        return {"job_id": job.id, "attempt": job.attempt, "started": time.time()}

    async def poll(self, handle: dict) -> ExecState:
        if time.time() - handle["started"] >= self.duration_s:
            return ExecState(SUCCEEDED, progress={"cells_total": 0, "cells_done": 0})
        return ExecState(RUNNING)

    async def cancel(self, handle: dict) -> None:
        return None

    async def adopt(self, job: JobSpec) -> dict | None:
        # Nothing ran: after a restart the job simply "runs" again from now.
        return {"job_id": job.id, "attempt": job.attempt, "started": time.time()}
