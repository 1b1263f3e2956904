"""Notebook jobs: submit (one, or a sweep), list, show, output, logs (follow), cancel, rerun, inspect."""
from __future__ import annotations

from aistack_hub.services.models import InspectRequest, JobQuery, JobSubmit, LogsQuery

from .base import APIHandler


class JobsHandler(APIHandler):
    async def post(self):
        req = await self.submission(JobSubmit)
        out = await self.services.jobs.submit(self.identity, req)
        if "id" in out:
            self.set_header("Location", f"jobs/{out['id']}")
        self.write_json(out, 201)

    async def get(self):
        self.write_json(await self.services.jobs.list(self.identity, self.query(JobQuery, lists=("state",))))


class JobHandler(APIHandler):
    async def get(self, job_id):
        self.write_json(await self.services.jobs.get(self.identity, job_id))


class JobCancelHandler(APIHandler):
    async def post(self, job_id):
        out = await self.services.jobs.cancel(self.identity, job_id)
        self.write_json(out, 200 if out["state"] == "cancelled" else 202)


class JobRerunHandler(APIHandler):
    async def post(self, job_id):
        self.write_json(await self.services.jobs.rerun(self.identity, job_id), 201)


class JobOutputHandler(APIHandler):
    async def get(self, job_id):
        text, state = await self.services.jobs.output(self.identity, job_id)
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("X-Aistack-Job-State", state)
        self.finish(text)


class JobLogsHandler(APIHandler):
    async def get(self, job_id):
        q = self.query(LogsQuery)
        chunks = self.services.jobs.logs(self.identity, job_id, q.offset, q.follow)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        try:
            if not q.follow:
                data, offset = await anext(chunks)
                self.set_header("X-Aistack-Log-Offset", str(offset))
                return self.finish(data)
            async for data, _ in chunks:
                if self.request.connection.stream.closed():
                    return
                if data:
                    self.write(data)
                    await self.flush()
            self.finish()
        finally:
            await chunks.aclose()


class InspectHandler(APIHandler):
    async def post(self):
        self.write_json(await self.services.jobs.inspect(self.identity, await self.submission(InspectRequest)))
