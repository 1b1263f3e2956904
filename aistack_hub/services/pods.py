"""What job pods (KubernetesExecutor) send and fetch: input, output, progress/log, result of one attempt.

Auth is the per-job token (``job_runner.pod.check_job_token``), no JupyterHub scope. What a pod sends is
stored in the run-file store (``ServiceContext.run_files``: the folder layout the LocalExecutor uses,
``<jobs_dir>/<id>/job.log``, ``<id>/attempt-<n>/{output.ipynb,progress.json,result.json}``, or the database,
which every replica reads), where the executor polls it. A pod may reach any replica.
"""
from __future__ import annotations

import json
import time

from job_runner.db import ACTIVE_STATES, Job, Notebook
from job_runner.experiments.marker import read_stop
from job_runner.failures import FAILURE_CLASSES, INFRASTRUCTURE, failure
from job_runner.pod import check_job_token

from . import notebooks
from .context import ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import row_id


def _count(v) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


class PodService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def _attempt(self, job_id: str, token: str | None, active: bool = True):
        """The job's row (detached) if ``token`` is its current attempt's; ``active``: it must be running."""
        n = row_id(job_id)
        with self.ctx.db.read() as s:
            row = s.get(Job, n) if n else None
            if row is None:
                raise NotFound("no such job")
            s.expunge(row)
        if not check_job_token(self.ctx.job_token_secret, row.id, row.attempt, token):
            raise Forbidden("invalid job token")
        if active and row.state not in ACTIVE_STATES:
            raise Conflict(f"job {row.id} is {row.state}", "not_running")
        return row

    @property
    def files(self):
        if self.ctx.run_files is None:
            raise Conflict("this service keeps no run files (no jobs_dir, no run-file store)", "no_run_files")
        return self.ctx.run_files

    def _put_json(self, row, name: str, value: dict) -> None:
        self.files.put(row.id, row.attempt, name, json.dumps(value).encode())

    def _input_db(self, job_id: str, token) -> dict:
        row = self._attempt(job_id, token, active=False)
        with self.ctx.db.read() as s:  # the row is detached: its notebook (stored once per content) read here
            text = s.get(Notebook, row.notebook_sha).text
        return {"notebook": json.loads(text), "parameters": row.parameters or {},
                "kernel_name": row.kernel_name, "timeout_s": row.timeout_s, "attempt": row.attempt}

    async def input(self, job_id: str, token) -> dict:
        return await self.ctx.offload.io(self._input_db, job_id, token)

    def _write_output(self, row, text: str) -> None:
        self.files.put(row.id, row.attempt, "output.ipynb", text.encode())

    async def output(self, job_id: str, token, body: bytes) -> None:
        io = self.ctx.offload.io
        row = await io(self._attempt, job_id, token)  # the token before the work of decoding
        text = await self.ctx.offload.cpu(notebooks.decode_output, body)
        await io(self._write_output, row, text)

    def _progress(self, job_id: str, token, body: dict) -> dict:
        """Stores the log and progress; answers ``{"ok": true}``, with ``"stop": why`` once the attempt has
        a stop marker (a pruned / stopped experiment trial: the pod writes it where its report() looks)."""
        row = self._attempt(job_id, token)
        cell, total, log = body.get("cell"), body.get("total"), body.get("log")
        if log is not None and not isinstance(log, str):
            raise Invalid("'log' must be text")
        if not (_count(cell) and _count(total)):
            raise Invalid("'cell' and 'total' must be non-negative integers")
        if log:
            self.files.append_log(row.id, log.encode(), self.ctx.limits.max_log_bytes)
        if cell is not None or total is not None:
            try:
                prog = json.loads(self.files.get(row.id, row.attempt, "progress.json") or b"null")
            except ValueError:
                prog = None
            if not isinstance(prog, dict):
                prog = {"cells_done": 0, "first_cell_at": time.time()}
            prog.update({"cells_total": total or prog.get("cells_total", 0), "current_cell": cell,
                         "cells_done": max(prog.get("cells_done", 0), cell or 0), "updated_at": time.time()})
            self._put_json(row, "progress.json", prog)
        stop = read_stop(self.ctx.run_files, row.id, row.attempt)
        return {"ok": True, "stop": stop} if stop else {"ok": True}

    async def progress(self, job_id: str, token, body: dict) -> dict:
        return await self.ctx.offload.io(self._progress, job_id, token, body)

    def _result(self, job_id: str, token, body: dict) -> None:
        row = self._attempt(job_id, token)
        ok, fail = body.get("ok"), body.get("failure")
        if not isinstance(ok, bool):
            raise Invalid("'ok' (boolean) is required")
        if not ok and (not isinstance(fail, dict) or fail.get("class") not in FAILURE_CLASSES):
            fail = failure(INFRASTRUCTURE, str(fail.get("message") if isinstance(fail, dict) else fail)[:500])
        self._put_json(row, "result.json", {"state": "succeeded"} if ok else {"state": "failed", "failure": fail})
        self.ctx.controller.wake()

    async def result(self, job_id: str, token, body: dict) -> None:
        await self.ctx.offload.io(self._result, job_id, token, body)
