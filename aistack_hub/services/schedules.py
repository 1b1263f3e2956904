"""Schedules (issue 14): create, list, show (with history), pause, resume, run now, delete; the tenants'
holiday calendars. The leader fires them (schedules_tick.py), so they run while nobody's server is up.
docs/pipelines.md."""
from __future__ import annotations

import datetime as dt
import time

from sqlalchemy.exc import IntegrityError
from traitlets import Bool, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from job_runner.db import utcnow
from job_runner.db.ops import iso
from job_runner.db.pipelines import Schedule, ScheduleFire, TenantHoliday
from job_runner.pipelines.spec import NAME
from job_runner.schedules import CATCH_UP, CONCURRENCY, ScheduleError, next_slot, validate_cron, validate_tz

from .context import Identity, ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import JobSubmit, parse
from .pipelines import SOURCE_FIELDS, check_fields, tenant_field

KINDS = ("notebook", "pipeline", "experiment")
FIELDS = {"name", "tenant", "kind", "target", "cron", "timezone", "on_window", "concurrency_policy", "catch_up",
          "catch_up_max", "starting_deadline_s"}


class ScheduleSettings(LoggingConfigurable):
    """Knobs of schedules (``ScheduleSettings`` section of the service config)."""

    min_interval_s = Float(60.0, help="The shortest interval between two slots a cron may have (a 6-field cron "
                           "with seconds is accepted only if this allows it; tests set 1).").tag(config=True)
    max_schedules_per_user = Integer(50, help="Schedules one user may own.").tag(config=True)
    max_catch_up = Integer(100, help="The largest catch_up_max a schedule may set (catch-up is bounded).").tag(config=True)
    history_limit = Integer(200, help="Fires of a schedule shown in GET schedules/{id} at most.").tag(config=True)
    webhook_url = Unicode("", help="If set: a POST of JSON {kind, user, schedule, message, link} to this URL when "
                          "a scheduled run fails (besides the JupyterLab notification).").tag(config=True)
    leader_only = Bool(True, help="Only the leader fires schedules. Off is for the replica test, which shows "
                       "that the (schedule, slot) row alone keeps two firing replicas from running a slot "
                       "twice.").tag(config=True)
    clock_offset_s = Float(0.0, help="Seconds added to this replica's clock for schedules (a drill or a test "
                           "of a slot without waiting for it; 0 in production).").tag(config=True)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(time.time() + self.clock_offset_s, dt.timezone.utc).replace(tzinfo=None)


def fire_json(f: ScheduleFire) -> dict:
    return {"id": f.id, "slot": iso(f.slot), "state": f.state, "reason": f.reason, "manual": bool(f.manual),
            "job_id": f.job_id, "run_id": f.run_id, "replica": f.replica, "created_at": iso(f.created_at),
            "finished_at": iso(f.finished_at)}


def schedule_json(r: Schedule, fires=None) -> dict:
    out = {"id": r.id, "name": r.name, "user": r.user, "tenant": r.tenant, "kind": r.kind, "target": r.target,
           "cron": r.cron, "timezone": r.timezone, "on_window": bool(r.on_window),
           "concurrency_policy": r.concurrency_policy, "catch_up": r.catch_up, "catch_up_max": r.catch_up_max,
           "starting_deadline_s": r.starting_deadline_s, "paused": bool(r.paused), "next_at": iso(r.next_at),
           "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}
    if fires is not None:
        out["history"] = [fire_json(f) for f in fires]
    return out


class ScheduleService:
    def __init__(self, ctx: ServiceContext, jobs, pipelines, settings: ScheduleSettings | None = None):
        self.ctx = ctx
        self.jobs = jobs
        self.pipelines = pipelines
        self.settings = settings or ScheduleSettings()
        self.experiments = None  # issue 13's service, if this deployment has it (set by the service)
        self.wake = lambda: None

    # ----------------------------------------------------------------------------- validation
    def _check(self, ident: Identity, body: dict) -> dict:
        if not isinstance(body, dict):
            raise Invalid("a JSON object")
        extra = sorted(set(body) - FIELDS)
        if extra:
            raise Invalid(f"unknown fields: {', '.join(extra)}")
        name = body.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise Invalid("'name': lower-case letters, digits, '-' or '_' (1-40)", "bad_name")
        kind = body.get("kind")
        if kind not in KINDS:
            raise Invalid(f"'kind' is one of {', '.join(KINDS)}", "bad_kind")
        if kind == "experiment" and self.experiments is None:
            raise Invalid("this deployment has no experiments service (issue 13): schedule a notebook or a "
                          "pipeline", "unsupported_kind")
        tenant = self.ctx.pick_tenant(ident, tenant_field(body))
        target = body.get("target")
        if not isinstance(target, dict):
            raise Invalid("'target' is an object: a job's fields (notebook) or {spec|path} (pipeline)")
        if kind == "notebook":
            if "path" not in target:
                raise Invalid("a notebook schedule's target needs 'path' (a notebook in your home)", "bad_target")
            req = parse(JobSubmit, {**target, "tenant": tenant})
            self.ctx.offered_profile(req.profile, tenant)
        elif kind == "experiment":
            from .experiments import ExperimentSubmit

            if "path" not in target:
                raise Invalid("an experiment schedule's target needs 'path' (a notebook in your home) and the "
                              "fields of POST experiments", "bad_target")
            self.ctx.offered_profile(parse(ExperimentSubmit, {**target, "tenant": tenant}).profile, tenant)
        elif kind == "pipeline":
            check_fields(target, SOURCE_FIELDS)  # its fire adds the tenant: a target's own would clash
            text, _ = self.pipelines._text(target, ident)
            self.pipelines.parse(text, tenant)  # a bad file: 400 with its line
        tz = body.get("timezone", "UTC")
        cron, on_window = body.get("cron"), bool(body.get("on_window", False))
        try:
            validate_tz(tz)
            if on_window == bool(cron):
                raise ScheduleError("give exactly one of 'cron' or 'on_window': true", "cron", "bad_cron")
            if cron:
                validate_cron(cron, self.settings.min_interval_s)
        except ScheduleError as e:
            raise Invalid(e.message, e.code) from None
        policy = body.get("concurrency_policy", "Allow")
        if policy not in CONCURRENCY:
            raise Invalid(f"'concurrency_policy' is one of {', '.join(CONCURRENCY)}", "bad_policy")
        catch_up = body.get("catch_up", "none")
        if catch_up not in CATCH_UP:
            raise Invalid(f"'catch_up' is one of {', '.join(CATCH_UP)}", "bad_policy")
        cmax = body.get("catch_up_max", 10)
        if isinstance(cmax, bool) or not isinstance(cmax, int) or not 1 <= cmax <= self.settings.max_catch_up:
            raise Invalid(f"'catch_up_max' is 1..{self.settings.max_catch_up} (ScheduleSettings.max_catch_up)")
        deadline = body.get("starting_deadline_s", 60)
        # 1 at least, as the message says: 5e-324 passed "0 <" and was stored as int() 0
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not 1 <= deadline <= 86400:
            raise Invalid("'starting_deadline_s' is 1..86400 seconds")
        return dict(name=name, tenant=tenant, kind=kind, target=target, cron=cron or None, timezone=tz,
                    on_window=int(on_window), concurrency_policy=policy, catch_up=catch_up, catch_up_max=cmax,
                    starting_deadline_s=int(deadline))

    def next_at(self, r: Schedule, after: dt.datetime) -> dt.datetime | None:
        t = self.ctx.tenant(r.tenant)
        return next_slot(r.cron, r.timezone, after, getattr(t, "windows", ()) or (), self.holidays(r.tenant))

    def holidays(self, tenant: str) -> frozenset:
        with self.ctx.db.read() as s:
            return frozenset(d for (d,) in s.query(TenantHoliday.day).filter(TenantHoliday.tenant == tenant).all())

    # --------------------------------------------------------------------------------- writes
    def _create_db(self, ident: Identity, body: dict) -> dict:
        fields = self._check(ident, body)
        now = self.settings.now()
        with self.ctx.db.session() as s:
            if s.query(Schedule).filter(Schedule.user == ident.name).count() >= self.settings.max_schedules_per_user:
                raise Conflict(f"you own {self.settings.max_schedules_per_user} schedules, the most one user may "
                               "(ScheduleSettings.max_schedules_per_user)", "too_many_schedules")
            r = Schedule(user=ident.name, paused=0, cursor=now, created_at=utcnow(), updated_at=utcnow(), **fields)
            r.next_at = self.next_at(r, now)
            s.add(r)
            s.flush()
            out = schedule_json(r, [])
        self.wake()
        return out

    async def create(self, ident: Identity, body: dict) -> dict:
        return await self.ctx.offload.io(self._create_db, ident, body)

    def _row(self, s, ident: Identity, sid: str) -> Schedule:
        return self.ctx.visible_row(s, ident, Schedule, sid, "schedule")

    def _pause_db(self, ident: Identity, sid: str, paused: bool) -> dict:
        with self.ctx.db.session() as s:
            r = self._row(s, ident, sid)
            now = self.settings.now()
            if r.paused and not paused:
                r.cursor = now  # what fell while paused is not caught up: paused means "do not run"
                r.next_at = self.next_at(r, now)
            r.paused, r.updated_at = int(paused), utcnow()
            s.flush()
            return schedule_json(r)

    async def pause(self, ident: Identity, sid: str, paused: bool = True) -> dict:
        return await self.ctx.offload.io(self._pause_db, ident, sid, paused)

    def _delete_db(self, ident: Identity, sid: str) -> dict:
        with self.ctx.db.session() as s:
            r = self._row(s, ident, sid)
            s.query(ScheduleFire).filter(ScheduleFire.schedule_id == r.id).delete()
            s.delete(r)
            return {"id": r.id, "deleted": True}

    async def delete(self, ident: Identity, sid: str) -> dict:
        return await self.ctx.offload.io(self._delete_db, ident, sid)

    async def run_now(self, ident: Identity, sid: str) -> dict:
        """A fire now (its own slot row, ``manual``), whatever the cron, through the same path as a slot."""
        def claim():
            with self.ctx.db.session() as s:
                r = self._row(s, ident, sid)
                f = ScheduleFire(schedule_id=r.id, slot=self.settings.now(), state="firing", manual=1,
                                 replica=self.replica, created_at=utcnow())
                s.add(f)
                try:
                    s.flush()
                except IntegrityError:
                    raise Conflict("this schedule fired this very second already", "already_fired") from None
                return r.id, f.id
        schedule_id, fire_id = await self.ctx.offload.io(claim)
        await self.ticker.fire(schedule_id, fire_id)
        return await self.get(ident, str(schedule_id))

    replica = "api"
    ticker = None  # set by the service (schedules_tick.ScheduleTicker)

    # ---------------------------------------------------------------------------------- reads
    def _get_db(self, ident: Identity, sid: str) -> dict:
        with self.ctx.db.read() as s:
            r = self._row(s, ident, sid)
            fires = (s.query(ScheduleFire).filter(ScheduleFire.schedule_id == r.id).order_by(ScheduleFire.slot.desc())
                     .limit(self.settings.history_limit).all())
            return schedule_json(r, fires)

    async def get(self, ident: Identity, sid: str) -> dict:
        return await self.ctx.offload.io(self._get_db, ident, sid)

    def _list_db(self, ident: Identity, limit: int | None, before: int | None) -> dict:
        lim = self.ctx.limits
        limit = min(limit or lim.default_page_size, lim.max_page_size)
        with self.ctx.db.read() as s:
            q = s.query(Schedule)
            if not ident.is_admin:
                tenants = self.ctx.admin_tenants(ident)
                q = q.filter((Schedule.user == ident.name) | Schedule.tenant.in_(tenants or [""]))
            if before:
                q = q.filter(Schedule.id < before)
            rows = q.order_by(Schedule.id.desc()).limit(limit + 1).all()
            more, rows = len(rows) > limit, rows[:limit]
            # inside the session: the rows' attributes are expired once it closes (DetachedInstanceError -> 500)
            return {"schedules": [schedule_json(r) for r in rows],
                    "next": f"limit={limit}&before={rows[-1].id}" if more and rows else None}

    async def list(self, ident: Identity, limit=None, before=None) -> dict:
        return await self.ctx.offload.io(self._list_db, ident, limit, before)

    # ------------------------------------------------------------------------------- holidays
    def _may_admin(self, ident: Identity, tenant: str) -> None:
        t = self.ctx.tenant(tenant)
        if t is None:
            raise NotFound(f"no tenant {tenant!r}")
        if not (ident.is_admin or ident.name in t.admins):
            raise Forbidden(f"only admins of tenant {tenant!r} set its holidays")

    def _get_holidays_db(self, ident: Identity, tenant: str) -> dict:
        t = self.ctx.tenant(tenant)
        if t is None or not (ident.is_admin or ident.name in t.admins or tenant in ident.groups):
            raise NotFound(f"no tenant {tenant!r}")
        with self.ctx.db.read() as s:
            rows = s.query(TenantHoliday).filter(TenantHoliday.tenant == tenant).order_by(TenantHoliday.day).all()
            return {"tenant": tenant, "days": [{"date": r.day.isoformat(), "name": r.name} for r in rows]}

    async def get_holidays(self, ident: Identity, tenant: str) -> dict:
        return await self.ctx.offload.io(self._get_holidays_db, ident, tenant)

    def _put_holidays_db(self, ident: Identity, tenant: str, body: dict) -> dict:
        self._may_admin(ident, tenant)
        days = body.get("days") if isinstance(body, dict) else None
        if not isinstance(days, list) or len(days) > 1000:
            raise Invalid("'days' is a list (at most 1000) of {date: 'YYYY-MM-DD', name}")
        parsed = {}
        for d in days:
            try:
                day, name = dt.date.fromisoformat(d["date"]), d.get("name") or ""
                # a name is text: an object was stored as its repr, a lone surrogate failed the write (500)
                if not isinstance(name, str):
                    raise TypeError
                name.encode()
            except (TypeError, KeyError, ValueError):  # UnicodeEncodeError is a ValueError
                raise Invalid(f"not a holiday {d!r}: {{date: 'YYYY-MM-DD', name: text}}") from None
            parsed[day] = name[:255]
        with self.ctx.db.session() as s:
            s.query(TenantHoliday).filter(TenantHoliday.tenant == tenant).delete()
            s.add_all([TenantHoliday(tenant=tenant, day=k, name=v) for k, v in sorted(parsed.items())])
        return self._get_holidays_db(ident, tenant)

    async def put_holidays(self, ident: Identity, tenant: str, body: dict) -> dict:
        return await self.ctx.offload.io(self._put_holidays_db, ident, tenant, body)
