"""GPU monitoring and GPU-aware idle culling, one call per request (``aistack_hub.api.monitoring``).

Who sees what: platform admins everything; a tenant admin their tenants' workloads, idle servers and
policies; a user their own servers (their idle warning, "keep"); the hub (its token) every server's
decision, which its spawners' idle watch asks for.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import select

from job_runner.db import Allocation
from job_runner.monitoring import store
from job_runner.monitoring.culling import POLICY_KEYS, Policy, warning_text

from .errors import Forbidden, Invalid, NotFound

MAX_SPAN_S = 90 * 86400
LATEST_S = 1e10  # UNIX seconds (year 2286): past this, datetime has no year for it (a 500 the fuzz test found)


def _span(since: float | None, until: float | None, default_s: float) -> tuple[float, float]:
    """(since, until) of a history query: until defaults to now, since to until - default_s; both finite
    UNIX seconds in 0..LATEST_S, the span more than 0 and at most MAX_SPAN_S."""
    for name, t in (("since", since), ("until", until)):
        if t is not None and not (math.isfinite(t) and 0 <= t <= LATEST_S):
            raise Invalid(f"{name} must be UNIX seconds from 0 to {LATEST_S:.0f}, not {t!r}")
    until = time.time() if until is None else until
    since = until - default_s if since is None else since
    if not 0 < until - since <= MAX_SPAN_S:
        raise Invalid(f"the span must be more than 0 and at most {MAX_SPAN_S // 86400} days")
    return since, until


def _points(points: int | None) -> int | None:
    if points is not None and points < 1:
        raise Invalid(f"points must be at least 1, not {points}")
    return points


class MonitoringService:
    def __init__(self, ctx, monitor):
        self.ctx, self.monitor = ctx, monitor

    def _allocation(self, allocation_id: int) -> Allocation:
        with self.ctx.db.read() as s:
            a = s.scalar(select(Allocation).where(Allocation.id == allocation_id))
            if a is None:
                raise NotFound(f"no allocation {allocation_id}")
            s.expunge(a)
            return a

    def _may_see(self, ident, tenant: str, user: str) -> bool:
        return ident.is_admin or ident.name == user or tenant in self.ctx.admin_tenants(ident)

    def _idle_answer(self, a: Allocation, d) -> dict:
        out = {"allocation_id": a.id, "user": a.user, "tenant": a.tenant, "server_name": a.server_name,
               **d.to_dict()}
        out["message"] = warning_text(a.server_name, a.tenant, d) if d.action in ("warn", "stop") else ""
        return out

    def idle(self, ident, allocation_id: int, now: float | None = None) -> dict:
        a = self._allocation(allocation_id)
        if not self._may_see(ident, a.tenant, a.user):
            raise NotFound(f"no allocation {allocation_id}")
        return self._idle_answer(a, self.monitor.decision(a.id, a.tenant, now))

    def my_idle(self, ident, user: str | None = None) -> dict:
        """The idle state of the caller's (or, for admins, ``user``'s) GPU servers."""
        who = user or ident.name
        if who != ident.name and not ident.is_admin:
            raise Forbidden("only admins see another user's servers")
        items = []
        for st in store.idle_states_of(self.ctx.db, user=who):
            d = self.monitor.decision(st.allocation_id, st.tenant)
            items.append({"allocation_id": st.allocation_id, "server_name": st.server_name, "tenant": st.tenant,
                          "last_util": st.last_util, **d.to_dict(),
                          "message": warning_text(st.server_name, st.tenant, d) if d.action != "ok" else ""})
        return {"user": who, "items": items, "max_keep_hours": self.monitor.max_keep_hours}

    def keep(self, ident, allocation_id: int, hours, now: float | None = None) -> dict:
        a = self._allocation(allocation_id)
        if not self._may_see(ident, a.tenant, a.user):
            raise NotFound(f"no allocation {allocation_id}")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours):
            raise Invalid(f"hours must be a number, not {hours!r}")
        hours = float(hours)
        try:
            d = self.monitor.keep(a.id, a.tenant, hours, now)
        except ValueError as e:
            raise Invalid(str(e)) from None
        except LookupError as e:
            raise NotFound(str(e)) from None
        return self._idle_answer(a, d)

    def _tenant_admin(self, ident, tenant: str):
        if self.ctx.tenant(tenant) is None:
            raise NotFound(f"no tenant {tenant!r}")
        if not (ident.is_admin or tenant in self.ctx.admin_tenants(ident)):
            raise Forbidden(f"{ident.name} does not administer tenant {tenant!r}")

    def policy(self, ident, tenant: str) -> dict:
        self._tenant_admin(ident, tenant)
        override = store.policy_overrides(self.ctx.db).get(tenant) or {k: None for k in POLICY_KEYS}
        return {"tenant": tenant, "override": override, "default": self.monitor.default_policy().__dict__,
                "effective": self.monitor.policy_for(tenant).__dict__}

    def set_policy(self, ident, tenant: str, body: dict) -> dict:
        self._tenant_admin(ident, tenant)
        unknown = set(body) - set(POLICY_KEYS)
        if unknown:
            raise Invalid(f"unknown policy fields {sorted(unknown)} (known: {', '.join(POLICY_KEYS)})")
        fields = {}
        for k, v in body.items():
            if v is None or v == "":
                fields[k] = None
            elif k == "enabled":
                if not isinstance(v, bool):
                    raise Invalid(f"enabled must be true, false or null, not {v!r}")
                fields[k] = v
            else:
                try:
                    fields[k] = float(v) if not isinstance(v, bool) else None
                except (TypeError, ValueError):
                    fields[k] = None
                # NaN passed Policy.check (every comparison is false) and was stored, then answered as NaN
                if fields[k] is None or not math.isfinite(fields[k]):
                    raise Invalid(f"{k} must be a finite number or null, not {v!r}")
        current = store.policy_overrides(self.ctx.db).get(tenant) or {}
        try:
            self.monitor.default_policy().merged({**current, **fields}).check()
        except ValueError as e:
            raise Invalid(f"tenant {tenant}: {e}") from None
        store.set_policy(self.ctx.db, tenant, fields, time.time())
        return self.policy(ident, tenant)

    def gpus(self, ident, since: float | None, until: float | None, points: int | None) -> dict:
        if not ident.is_admin:
            raise Forbidden("GPU history is for platform admins")
        since, until = _span(since, until, 6 * 3600)
        points = min(_points(points) or self.monitor.history_points, self.monitor.history_points)
        return {"since": since, "until": until, "source": self.monitor.source_status,
                "series": store.gpu_history(self.ctx.db, since, until, points)}

    def workloads(self, ident) -> dict:
        mine = None if ident.is_admin else self.ctx.admin_tenants(ident)
        items = [w for w in store.latest_workloads(self.ctx.db, time.time() - self.monitor.stale)
                 if mine is None or w["tenant"] in mine or w["user"] == ident.name]
        return {"items": items}

    def idle_intervals(self, ident, since: float, until: float, tenant: str | None) -> dict:
        if tenant:
            self._tenant_admin(ident, tenant)
        elif not ident.is_admin:
            raise Forbidden("name a tenant you administer, or be a platform admin")
        since, until = _span(since, until, 0)
        items = store.idle_intervals(self.ctx.db, since, until, tenant)
        return {"since": since, "until": until, "items": items,
                "idle_gpu_hours": round(sum(i["idle_gpu_hours"] for i in items), 6)}

    def queue(self, ident, since: float | None, until: float | None, points: int | None) -> dict:
        """Queue length (jobs waiting) and the mean wait of the jobs that started, per time bucket."""
        if not ident.is_admin:
            raise Forbidden("the queue's history is for platform admins")
        import datetime as _dt

        from job_runner.db import Job

        since, until = _span(since, until, 24 * 3600)
        n = min(_points(points) or 48, 500)
        width = (until - since) / n
        utc = _dt.timezone.utc
        ts = (lambda d: d.replace(tzinfo=utc).timestamp() if d is not None else None)
        lo = _dt.datetime.fromtimestamp(since, utc).replace(tzinfo=None)
        hi = _dt.datetime.fromtimestamp(until, utc).replace(tzinfo=None)
        with self.ctx.db.read() as s:
            rows = s.execute(select(Job.created_at, Job.started_at, Job.finished_at).where(
                Job.created_at < hi, (Job.started_at.is_(None)) | (Job.started_at >= lo)).limit(100000)).all()
        buckets = [{"ts": since + (i + 0.5) * width, "queued": 0, "started": 0, "wait_s": 0.0} for i in range(n)]
        for created, started, finished in rows:
            c, st = ts(created), ts(started) or ts(finished)
            for i, b in enumerate(buckets):
                t = since + (i + 1) * width
                if c <= t and (st is None or st > t):
                    b["queued"] += 1
            if started is not None and since <= ts(started) < until:
                b = buckets[min(n - 1, int((ts(started) - since) / width))]
                b["started"] += 1
                b["wait_s"] += ts(started) - c
        for b in buckets:
            b["mean_wait_s"] = b.pop("wait_s") / b["started"] if b["started"] else None
        return {"since": since, "until": until, "points": buckets}

    def alarms(self, ident) -> dict:
        if not ident.is_admin:
            raise Forbidden("alarms are for platform admins")
        return {"items": store.open_alarms(self.ctx.db), "source": self.monitor.source_status}


__all__ = ["MonitoringService", "Policy"]
