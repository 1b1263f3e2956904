"""The leader's pass over schedules: which slots are due (job_runner.schedules), one ``schedule_fires`` row per
(schedule, slot) *written before anything is submitted* (unique: a second replica, or the same one after a
restart, fails to insert it and does nothing), the concurrency policy, the submission as the owner, and
the fires' outcomes (a failure notifies the owner: a notification row the lab polls, and the webhook).
"""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy.exc import IntegrityError

from job_runner.db import FINAL_STATES, Job, utcnow
from job_runner.db.pipelines import Notification, PipelineRun, Schedule, ScheduleFire
from job_runner.schedules import cron_slots, decide, window_slots

from .context import Identity
from .errors import DomainError
from .models import parse
from .pipelines_advance import submit_path_job

ADMIN = Identity(name="hub", kind="hub", admin=True)
KEEP = object()  # _set: leave the fire's reason as it is
MAX_SKIP_ROWS = 100  # skipped slots recorded per schedule and pass at most


class ScheduleTicker:
    def __init__(self, service, replica: str, log):
        self.svc = service
        self.ctx = service.ctx
        self.replica = replica
        self.log = log

    async def run_once(self) -> int:
        """Fire what is due; follow what fired. Returns the fires submitted."""
        claims = await self.ctx.offload.io(self._claim_due)
        for schedule_id, fire_id in claims:
            try:
                await self.fire(schedule_id, fire_id)
            except Exception:  # noqa: BLE001 - the fire row says what happened; the next schedule goes on
                self.log.exception("schedule %s: firing failed", schedule_id)
        failed = await self.ctx.offload.io(self._follow)
        for note in failed:
            await self._webhook(note)
        return len(claims)

    # ------------------------------------------------------------------------- due slots
    def _claim_due(self) -> list:
        now = self.svc.settings.now()
        with self.ctx.db.read() as s:
            rows = s.query(Schedule).filter(Schedule.paused == 0).all()
            s.expunge_all()  # plain copies: read() rolls back (which would expire them)
        claims = []
        for r in rows:
            if r.next_at is not None and r.next_at > now:
                continue
            limit = r.catch_up_max + MAX_SKIP_ROWS
            if r.cron:
                due, _ = cron_slots(r.cron, r.timezone, r.cursor, now, limit)
            else:
                t = self.ctx.tenant(r.tenant)
                due, _ = window_slots(getattr(t, "windows", ()) or (), self.svc.holidays(r.tenant), r.timezone,
                                      r.cursor, now, limit)
            d = decide(due, now, r.catch_up, r.catch_up_max, r.starting_deadline_s)
            with self.ctx.db.session() as s:
                for slot, why in d.skip:
                    self._insert(s, r.id, slot, "skipped", why)
                for slot in d.fire:
                    why = f"caught up (catch_up: {r.catch_up}): missed at its time" if slot in d.caught_up else None
                    fid = self._insert(s, r.id, slot, "firing", why)
                    if fid is not None:
                        claims.append((r.id, fid))
                row = s.get(Schedule, r.id)
                if row is not None and row.cursor < now:
                    row.cursor, row.next_at = now, self.svc.next_at(row, now)
        return claims

    def _insert(self, s, schedule_id: int, slot: dt.datetime, state: str, reason) -> int | None:
        f = ScheduleFire(schedule_id=schedule_id, slot=slot, state=state, reason=reason, manual=0,
                         replica=self.replica, created_at=utcnow())
        try:
            with s.begin_nested():
                s.add(f)
                s.flush()
        except IntegrityError:
            return None  # this slot is someone's already (another replica, or before a restart)
        return f.id

    # ------------------------------------------------------------------------------ fire
    def _active_fires(self, schedule_id: int, fire_id: int) -> list:
        with self.ctx.db.read() as s:
            return [(f.id, f.job_id, f.run_id) for f in s.query(ScheduleFire).filter(
                ScheduleFire.schedule_id == schedule_id, ScheduleFire.state == "submitted", ScheduleFire.id != fire_id)]

    def _load(self, schedule_id: int):
        with self.ctx.db.read() as s:
            r = s.get(Schedule, schedule_id)
            s.expunge_all()
            return r

    async def fire(self, schedule_id: int, fire_id: int) -> None:
        r = await self.ctx.offload.io(self._load, schedule_id)
        if r is None:
            return
        active = await self.ctx.offload.io(self._live_others, schedule_id, fire_id)  # DB reads off the loop
        if active and r.concurrency_policy == "Forbid":
            await self.ctx.offload.io(self._set, fire_id, "skipped",
                                      f"Forbid: the run of fire {active[0][0]} is still going", None, None)
            return
        if active and r.concurrency_policy == "Replace":
            for _, job_id, run_id in active:
                try:
                    if job_id:
                        await self.svc.jobs.cancel(ADMIN, str(job_id))
                    if run_id:
                        await self.svc.pipelines.cancel(ADMIN, str(run_id))
                except DomainError:
                    pass
        ident = Identity(name=r.user, groups=frozenset([r.tenant]))
        try:
            job_id = run_id = None
            if r.kind == "notebook":
                job = await submit_path_job(self.ctx, self.svc.jobs, ident, {**r.target, "tenant": r.tenant})
                job_id = job["id"]
            elif r.kind == "pipeline":
                run = await self.svc.pipelines.create(ident, {**r.target, "tenant": r.tenant}, schedule_id=r.id)
                run_id = run["id"]
            else:  # issue 13's experiments: started, not followed here (its own page says how it ends)
                from .experiments import ExperimentSubmit

                exp = await self.svc.experiments.create(ident, parse(ExperimentSubmit, {**r.target, "tenant": r.tenant}))
                await self.ctx.offload.io(self._set, fire_id, "started", f"experiment {exp.get('id')}", None, None)
                return
        except DomainError as e:
            await self.ctx.offload.io(self._set, fire_id, "failed", f"not submitted: {e.message}", None, None)
            note = await self.ctx.offload.io(self._notify, r, f"schedule {r.name!r} could not submit: {e.message}")
            await self._webhook(note)
            return
        await self.ctx.offload.io(self._set, fire_id, "submitted", KEEP, job_id, run_id)

    def _live_others(self, schedule_id: int, fire_id: int) -> list:
        return self._live(self._active_fires(schedule_id, fire_id))

    def _live(self, fires: list) -> list:
        """The fires whose job or run has not ended."""
        out = []
        with self.ctx.db.read() as s:
            for fid, job_id, run_id in fires:
                if job_id and (s.get(Job, job_id) is not None) and s.get(Job, job_id).state not in FINAL_STATES:
                    out.append((fid, job_id, run_id))
                elif run_id and (s.get(PipelineRun, run_id) is not None) and s.get(PipelineRun, run_id).state == "running":
                    out.append((fid, job_id, run_id))
        return out

    def _set(self, fire_id: int, state: str, reason, job_id, run_id) -> None:
        with self.ctx.db.session() as s:
            f = s.get(ScheduleFire, fire_id)
            f.state, f.job_id, f.run_id = state, job_id, run_id
            if reason is not KEEP:
                f.reason = reason
            if state in ("skipped", "failed"):
                f.finished_at = utcnow()

    # ---------------------------------------------------------------------------- follow
    def _follow(self) -> list:
        notes = []
        with self.ctx.db.session() as s:
            for f in s.query(ScheduleFire).filter(ScheduleFire.state == "submitted").limit(1000).all():
                state = None
                if f.job_id:
                    j = s.get(Job, f.job_id)
                    state = j.state if j is not None and j.state in FINAL_STATES else None
                    why = (j.failure or {}).get("message") if j is not None else None
                elif f.run_id:
                    run = s.get(PipelineRun, f.run_id)
                    state = run.state if run is not None and run.state != "running" else None
                    why = run.message if run is not None else None
                if state is None:
                    continue
                f.state, f.finished_at = state, utcnow()
                if state == "failed":
                    f.reason = why
                    sched = s.get(Schedule, f.schedule_id)
                    if sched is not None:
                        what = f"job {f.job_id}" if f.job_id else f"pipeline run {f.run_id}"
                        n = Notification(user=sched.user, kind="schedule_failed",
                                         link=f"jobs/{f.job_id}" if f.job_id else f"pipelines/runs/{f.run_id}",
                                         message=f"schedule {sched.name!r}: {what} failed: {why or 'see its page'}")
                        s.add(n)
                        notes.append({"kind": n.kind, "user": n.user, "schedule": sched.name, "message": n.message,
                                      "link": n.link})
        return notes

    def _notify(self, r: Schedule, message: str) -> dict:
        with self.ctx.db.session() as s:
            s.add(Notification(user=r.user, kind="schedule_failed", message=message, link=f"schedules/{r.id}"))
        return {"kind": "schedule_failed", "user": r.user, "schedule": r.name, "message": message,
                "link": f"schedules/{r.id}"}

    async def _webhook(self, note: dict) -> None:
        url = self.svc.settings.webhook_url
        if not url:
            return
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        try:
            await AsyncHTTPClient().fetch(url, method="POST", body=json.dumps(note),
                                          headers={"Content-Type": "application/json"}, request_timeout=5)
        except (HTTPClientError, OSError) as e:
            self.log.warning("schedule webhook %s failed: %s", url, e)
