"""Endpoints for job pods (KubernetesExecutor): input, output, progress/log, result of one attempt.

Auth: the per-job token in ``X-Aistack-Job-Token`` (``aistack_hub.services.pods``), no JupyterHub scope.
"""
from __future__ import annotations

from job_runner.pod import TOKEN_HEADER

from .base import APIHandler

OK = {"ok": True}


class PodHandler(APIHandler):
    auth_required = False

    @property
    def token(self):
        return self.request.headers.get(TOKEN_HEADER)


class PodInputHandler(PodHandler):
    async def get(self, job_id):
        self.write_json(await self.services.pods.input(job_id, self.token))


class PodOutputHandler(PodHandler):
    async def put(self, job_id):
        # "output too large (N MiB > M MiB limit)": what the pod reports, not a time-out
        await self.services.pods.output(job_id, self.token, self._raw_body("output"))
        self.write_json(OK)


class PodProgressHandler(PodHandler):
    async def post(self, job_id):
        self.write_json(await self.services.pods.progress(job_id, self.token, await self.json_object()))


class PodResultHandler(PodHandler):
    async def post(self, job_id):
        await self.services.pods.result(job_id, self.token, await self.json_object())
        self.write_json(OK)
