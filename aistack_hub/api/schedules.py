"""Schedules (issue 14): create, list, show with history, pause, resume, run now, delete; a tenant's holiday
calendar (its admins set it)."""
from __future__ import annotations

from .pipelines import _Base, _int


class SchedulesHandler(_Base):
    async def post(self):
        out = await self.services.schedules.create(self.identity, await self.json_object())
        self.set_header("Location", f"schedules/{out['id']}")
        self.write_json(out, 201)

    async def get(self):
        self.write_json(await self.services.schedules.list(self.identity, _int(self, "limit"), _int(self, "before")))


class ScheduleHandler(_Base):
    async def get(self, sid):
        self.write_json(await self.services.schedules.get(self.identity, sid))

    async def delete(self, sid):
        self.write_json(await self.services.schedules.delete(self.identity, sid))


class SchedulePauseHandler(_Base):
    async def post(self, sid):
        self.write_json(await self.services.schedules.pause(self.identity, sid, True))


class ScheduleResumeHandler(_Base):
    async def post(self, sid):
        self.write_json(await self.services.schedules.pause(self.identity, sid, False))


class ScheduleRunHandler(_Base):
    async def post(self, sid):
        self.write_json(await self.services.schedules.run_now(self.identity, sid), 201)


class HolidaysHandler(_Base):
    async def get(self, tenant):
        self.write_json(await self.services.schedules.get_holidays(self.identity, tenant))

    async def put(self, tenant):
        self.write_json(await self.services.schedules.put_holidays(self.identity, tenant, await self.json_object()))


def routes(api: str, kw: dict) -> list:
    one = r"schedules/([0-9A-Za-z_-]+)"
    return [
        (api + "schedules", SchedulesHandler, kw),
        (api + r"schedules/holidays/([^/]+)", HolidaysHandler, kw),
        (api + one, ScheduleHandler, kw),
        (api + one + "/pause", SchedulePauseHandler, kw),
        (api + one + "/resume", ScheduleResumeHandler, kw),
        (api + one + "/run", ScheduleRunHandler, kw),
    ]
