"""Endpoints for job pods (KubernetesExecutor): input, output, progress/log, result of one attempt.

Auth: the per-job token in ``X-Aistack-Job-Token`` (``job_runner.pod.check_job_token``), no JupyterHub
scope. What the pod sends is stored in the same layout the LocalExecutor uses (``<jobs_dir>/<id>/job.log``,
``<jobs_dir>/<id>/attempt-<n>/{output.ipynb,progress.json,result.json}``), where the executor polls it.
"""
from __future__ import annotations

import json
import os
import time

from job_runner.db import ACTIVE_STATES, Job
from job_runner.failures import FAILURE_CLASSES, INFRASTRUCTURE, failure
from job_runner.pod import TOKEN_HEADER, check_job_token
from job_runner.run_notebook import write_json_atomic

from .base import APIError, APIHandler


class PodHandler(APIHandler):
    auth_required = False

    def attempt_row(self, job_id):
        try:
            jid = int(job_id)
        except ValueError:
            raise APIError(404, "not_found", "no such job") from None
        with self.ctx.db.read() as s:
            row = s.get(Job, jid) if 0 < jid < 2**62 else None
            if row is None:
                raise APIError(404, "not_found", "no such job")
            s.expunge(row)
        token = self.request.headers.get(TOKEN_HEADER)
        if not check_job_token(self.ctx.job_token_secret, row.id, row.attempt, token):
            raise APIError(403, "forbidden", "invalid job token")
        return row

    def attempt_dir(self, row) -> str:
        d = os.path.join(self.ctx.jobs_dir, str(row.id), f"attempt-{row.attempt}")
        os.makedirs(d, exist_ok=True)
        return d

    def require_active(self, row):
        if row.state not in ACTIVE_STATES:
            raise APIError(409, "not_running", f"job {row.id} is {row.state}")


class PodInputHandler(PodHandler):
    async def get(self, job_id):
        row = self.attempt_row(job_id)
        self.write_json({"notebook": json.loads(row.notebook), "parameters": row.parameters or {},
                         "kernel_name": row.kernel_name, "cwd": row.cwd, "timeout_s": row.timeout_s,
                         "attempt": row.attempt, "env": row.env or {}})


class PodOutputHandler(PodHandler):
    async def put(self, job_id):
        row = self.attempt_row(job_id)
        self.require_active(row)
        body = self.json_body()
        import nbformat  # here, not at import: the service must start within JupyterHub's check

        try:
            nbformat.from_dict(body)
            text = json.dumps(body)
        except Exception as e:  # noqa: BLE001
            raise APIError(400, "bad_notebook", f"not a notebook: {e}") from None
        path = os.path.join(self.attempt_dir(row), "output.ipynb")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        self.write_json({"ok": True})


class PodProgressHandler(PodHandler):
    async def post(self, job_id):
        row = self.attempt_row(job_id)
        self.require_active(row)
        body = self.json_body()
        cell, total, log = body.get("cell"), body.get("total"), body.get("log")
        if log is not None:
            if not isinstance(log, str):
                raise APIError(400, "bad_request", "'log' must be text")
            os.makedirs(os.path.join(self.ctx.jobs_dir, str(row.id)), exist_ok=True)
            with open(os.path.join(self.ctx.jobs_dir, str(row.id), "job.log"), "a") as f:
                f.write(log)
        if cell is not None or total is not None:
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (cell or 0, total or 0)):
                raise APIError(400, "bad_request", "'cell' and 'total' must be non-negative integers")
            path = os.path.join(self.attempt_dir(row), "progress.json")
            try:
                with open(path) as f:
                    prog = json.load(f)
            except (OSError, ValueError):
                prog = {"cells_done": 0, "first_cell_at": time.time()}
            prog.update({"cells_total": total or prog.get("cells_total", 0), "current_cell": cell,
                         "cells_done": max(prog.get("cells_done", 0), cell or 0), "updated_at": time.time()})
            write_json_atomic(path, prog)
        self.write_json({"ok": True})


class PodResultHandler(PodHandler):
    async def post(self, job_id):
        row = self.attempt_row(job_id)
        self.require_active(row)
        body = self.json_body()
        ok = body.get("ok")
        if not isinstance(ok, bool):
            raise APIError(400, "bad_request", "'ok' (boolean) is required")
        fail = body.get("failure")
        if not ok:
            if not isinstance(fail, dict) or fail.get("class") not in FAILURE_CLASSES:
                fail = failure(INFRASTRUCTURE, str((fail or {}).get("message") if isinstance(fail, dict) else fail)[:500])
        result = {"state": "succeeded"} if ok else {"state": "failed", "failure": fail}
        write_json_atomic(os.path.join(self.attempt_dir(row), "result.json"), result)
        self.ctx.queue.wake()
        self.write_json({"ok": True})
