"""Notebook jobs: submit (one, or a sweep), list, show, output, logs (follow), cancel, rerun, inspect."""
from __future__ import annotations

import re

from aistack_hub.services.errors import Invalid, RangeNotSatisfiable
from aistack_hub.services.models import InspectRequest, JobQuery, JobSubmit, LogsQuery, OutputQuery

from .base import APIHandler

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class JobsHandler(APIHandler):
    async def post(self):
        req = await self.submission(JobSubmit)
        out = await self.services.jobs.submit(self.identity, req)
        if "id" in out:
            self.set_header("Location", f"jobs/{out['id']}")
        self.write_json(out, 201)

    async def get(self):
        out = await self.services.jobs.list(self.identity, self.query(JobQuery, lists=("state",)))
        if out.get("next"):
            self.set_header("Link", f'<jobs?{out["next"]}>; rel="next"')
        self.write_json(out)


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
    """The output notebook: whole (up to Limits.max_output_bytes), or a byte range (``Range: bytes=a-b``,
    ``bytes=a-``, ``bytes=-n``; or ``?offset=&length=``) answered 206 with Content-Range; sent in chunks."""

    def _range(self) -> tuple[int | None, int | None, int | None]:
        header = self.request.headers.get("Range")
        if header:
            m = _RANGE.fullmatch(header.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                raise Invalid("the Range header must be one range: 'bytes=first-last', 'bytes=first-' or "
                              "'bytes=-suffix'", "bad_range")
            first, last = m.group(1), m.group(2)
            if first == "":
                return None, None, int(last)
            if last != "" and int(last) < int(first):
                raise Invalid("the Range's last byte is before its first", "bad_range")
            return int(first), (int(last) if last != "" else None), None
        q = self.query(OutputQuery)
        if q.offset is None and q.length is None:
            return None, None, None
        first = q.offset or 0
        return first, (first + q.length - 1 if q.length else None), None

    async def get(self, job_id):
        first, last, suffix = self._range()
        try:
            part = await self.services.jobs.output(self.identity, job_id, first, last, suffix)
        except RangeNotSatisfiable as e:  # answered here: send_error would drop the Content-Range header
            self.set_header("Content-Range", f"bytes */{e.size}")
            return self.write_json({"error": e.code, "message": e.message}, 416)
        try:
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.set_header("X-Aistack-Job-State", part.state)
            self.set_header("Accept-Ranges", "bytes")
            self.set_header("Content-Length", str(part.end - part.start))
            if part.partial:
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {part.start}-{part.end - 1}/{part.size}")
            async for data in part.chunks(self.services.ctx.offload.io):
                if self.request.connection.stream.closed():
                    return
                self.write(data)
                await self.flush()  # one chunk in memory at a time, and the loop is free meanwhile
            self.finish()
        finally:
            part.close()


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
            first = True
            async for data, _ in chunks:
                if self.request.connection.stream.closed():
                    return
                if data or first:  # the headers at once: the client knows it is following (not refused)
                    self.write(data)
                    await self.flush()
                    first = False
            self.finish()
        finally:
            await chunks.aclose()


class InspectHandler(APIHandler):
    async def post(self):
        self.write_json(await self.services.jobs.inspect(self.identity, await self.submission(InspectRequest)))
