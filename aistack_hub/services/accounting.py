"""Accounting (issue 15 A, docs/accounting.md): usage reports (JSON or CSV), the price book, budgets and the
reminders the hub / lab show. Who sees what: a user their own usage; a tenant admin their tenants'; a
platform admin everything. Prices are readable by everyone signed in and written by platform admins; budgets
are read by the tenant's members and admins and written by platform admins."""
from __future__ import annotations

import calendar
import csv
import datetime as _dt
import io
import time
from typing import Annotated, Literal

from pydantic import Field, field_validator
from sqlalchemy.exc import IntegrityError

from job_runner.accounting.budgets import budget_status, month_start
from job_runner.accounting.charge import inventory_models
from job_runner.accounting.prices import RESOURCES, price_json
from job_runner.accounting.recorder import sync_servers
from job_runner.accounting.report import FIGURES, GROUPS, usage_report
from job_runner.db import ALLOC_PENDING, QUEUED, Allocation, Job
from job_runner.db.accounting import Budget, Price

from .context import Identity, ServiceContext
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import _Body, _Query

PAGE_DEFAULT = 100  # report rows / prices / budgets per page unless ``limit`` says otherwise
PAGE_MAX = 1000  # the most rows a JSON page holds
CSV_MAX_ROWS = 100_000  # the most rows one CSV download holds (page on with offset beyond)
MAX_PERIOD_DAYS = 3660
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class ReportQuery(_Query):
    start: str | None = None  # ISO date or date-time (UTC); default: the 1st of this month
    end: str | None = None  # default: now
    period: Literal["today", "this_month", "last_month", "7d", "30d", "90d"] | None = None
    group_by: list[Literal[GROUPS]] = Field(default_factory=lambda: ["tenant"])
    tenant: str | None = None
    user: str | None = None
    format: Literal["json", "csv"] | None = None
    limit: Annotated[int, Field(ge=1, le=CSV_MAX_ROWS)] | None = None
    offset: Annotated[int, Field(ge=0, le=2**31)] = 0


class PageQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    offset: Annotated[int, Field(ge=0, le=2**31)] = 0
    resource: Literal[RESOURCES] | None = None


class PriceBody(_Body):
    resource: Literal[RESOURCES]
    gpu_model: Annotated[str, Field(max_length=63)] | None = None
    unit_price: Money
    currency: Annotated[str, Field(min_length=1, max_length=8)] = "USD"
    effective_from: str  # ISO date
    note: Annotated[str, Field(max_length=1000)] | None = None

    @field_validator("effective_from")
    @classmethod
    def _date(cls, v):
        _date(v, "effective_from")
        return v


class BudgetBody(_Body):
    amount: Money
    currency: Annotated[str, Field(min_length=1, max_length=8)] = "USD"
    thresholds: list[Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0], max_length=10)
    hold: bool = False


def _date(text: str, what: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text[:10]) if len(text) >= 10 else _dt.date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{what} must be an ISO date (YYYY-MM-DD), not {text!r}", "bad_date") from None


def _ts(text: str, what: str) -> float:
    try:
        d = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{what} must be an ISO date or date-time (UTC), not {text!r}", "bad_date") from None
    if d.tzinfo is not None:
        d = d.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return calendar.timegm(d.timetuple()) + d.microsecond / 1e6


def period_bounds(q: ReportQuery, now: float) -> tuple[float, float]:
    if q.period == "today":
        start, end = now - now % 86400, now
    elif q.period == "last_month":
        end = month_start(now)
        start = month_start(end - 1)
    elif q.period in ("7d", "30d", "90d"):
        start, end = now - int(q.period[:-1]) * 86400, now
    else:
        start = _ts(q.start, "start") if q.start else month_start(now)
        end = _ts(q.end, "end") if q.end else now
    if end <= start:
        raise Invalid("the period's end must be after its start", "bad_period")
    if end - start > MAX_PERIOD_DAYS * 86400:
        raise Invalid(f"a report covers at most {MAX_PERIOD_DAYS} days", "bad_period")
    return start, end


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def close_server(ctx: ServiceContext, s, alloc_id: int) -> None:
    """The hook of DELETE allocations: the server's interval ends in the release's transaction."""
    inv = getattr(ctx.deployment, "inventory", None)
    sync_servers(s, [alloc_id], inventory_models(inv) if inv is not None else None)


def to_csv(rows: list[dict], group_by) -> str:
    out = io.StringIO()
    cols = list(group_by) + list(FIGURES) + ["currency"]
    w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r[k]))
                    for k in cols})
    return out.getvalue()


class AccountingService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ scope
    def scope(self, ident: Identity, tenant: str | None, user: str | None):
        """(tenants, users) the caller may see for this request (None: no restriction)."""
        if ident.is_admin:
            return ({tenant} if tenant else None), ({user} if user else None)
        administered = self.ctx.admin_tenants(ident)
        if tenant is not None:
            if tenant in administered:
                return {tenant}, ({user} if user else None)
            if tenant not in ident.groups:
                raise Forbidden(f"you may not see the usage of tenant {tenant!r}", "forbidden")
            if user not in (None, ident.name):
                raise Forbidden("you may see only your own usage in this tenant", "forbidden")
            return {tenant}, {ident.name}
        if user is not None and user != ident.name:
            if not administered:
                raise Forbidden("you may see only your own usage", "forbidden")
            return administered, {user}
        if administered and user is None:
            return administered, None
        return None, {ident.name}

    # ------------------------------------------------------------------ reports
    def _report_db(self, q: ReportQuery, tenants, users, now: float) -> dict:
        start, end = period_bounds(q, now)
        with self.ctx.db.read() as s:
            rows = usage_report(s, start, end, tuple(dict.fromkeys(q.group_by)), tenants, users, now=now)
        totals = {k: sum(r[k] for r in rows) for k in FIGURES}
        csv_ = q.format == "csv"
        limit = q.limit or (CSV_MAX_ROWS if csv_ else PAGE_DEFAULT)
        if not csv_:
            limit = min(limit, PAGE_MAX)
        page = rows[q.offset:q.offset + limit]
        nxt = q.offset + limit if q.offset + limit < len(rows) else None
        return {"start": _iso(start), "end": _iso(min(end, now)), "group_by": list(dict.fromkeys(q.group_by)),
                "rows": page, "total": len(rows), "offset": q.offset, "limit": limit, "next_offset": nxt,
                "totals": totals, "currency": rows[0]["currency"] if rows else None}

    async def report(self, ident: Identity, q: ReportQuery, now: float | None = None) -> dict:
        tenants, users = self.scope(ident, q.tenant, q.user)
        out = await self.ctx.offload.io(self._report_db, q, tenants, users, time.time() if now is None else now)
        if q.format == "csv":
            out["csv"] = to_csv(out["rows"], out["group_by"])
        return out

    # ------------------------------------------------------------------ price book
    def _prices_db(self, q: PageQuery) -> dict:
        with self.ctx.db.read() as s:
            base = s.query(Price)
            if q.resource:
                base = base.filter(Price.resource == q.resource)
            total = base.count()
            rows = base.order_by(Price.resource, Price.gpu_model, Price.effective_from.desc(), Price.id.desc()) \
                .offset(q.offset).limit(q.limit).all()
            prices = [price_json(r) for r in rows]
        nxt = q.offset + q.limit if q.offset + q.limit < total else None
        return {"prices": prices, "total": total, "offset": q.offset, "limit": q.limit,
                "next_offset": nxt}

    async def prices(self, ident: Identity, q: PageQuery) -> dict:
        return await self.ctx.offload.io(self._prices_db, q)

    def _check_price(self, s, body: PriceBody, exclude: int | None = None) -> _dt.date:
        eff = _date(body.effective_from, "effective_from")
        other = s.query(Price.currency).filter(Price.currency != body.currency)
        if exclude is not None:
            other = other.filter(Price.id != exclude)
        cur = other.first()
        if cur is not None:
            raise Invalid(f"the price book is in {cur[0]}: one currency for all prices", "bad_currency")
        if body.resource != "gpu" and body.gpu_model:
            raise Invalid("only gpu prices name a gpu_model", "bad_request")
        return eff

    def _add_price_db(self, ident: Identity, body: PriceBody) -> dict:
        try:
            with self.ctx.db.session() as s:
                eff = self._check_price(s, body)
                row = Price(resource=body.resource, gpu_model=body.gpu_model or "", unit_price=body.unit_price,
                            currency=body.currency, effective_from=eff, note=body.note, created_by=ident.name)
                s.add(row)
                s.flush()
                return price_json(row)
        except IntegrityError:
            raise Conflict(f"a {body.resource} price{' for ' + body.gpu_model if body.gpu_model else ''} "
                           f"effective {body.effective_from} exists already: change that version", "exists") from None

    async def add_price(self, ident: Identity, body: PriceBody) -> dict:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._add_price_db, ident, body)

    def _future_price(self, s, price_id: int) -> Price:
        row = s.get(Price, price_id)
        if row is None:
            raise NotFound(f"no price {price_id}")
        if row.effective_from <= _dt.datetime.utcnow().date():
            raise Conflict(f"price {price_id} is in force since {row.effective_from.isoformat()}: past prices stay "
                           "as they were (add a new version with a later effective_from)", "price_in_force")
        return row

    def _edit_price_db(self, ident: Identity, price_id: int, body: PriceBody | None) -> dict | None:
        try:
            with self.ctx.db.session() as s:
                row = self._future_price(s, price_id)
                if body is None:
                    s.delete(row)
                    return None
                eff = self._check_price(s, body, exclude=price_id)
                if eff <= _dt.datetime.utcnow().date():
                    raise Invalid("a changed version must take effect after today", "bad_date")
                row.resource, row.gpu_model, row.unit_price = body.resource, body.gpu_model or "", body.unit_price
                row.currency, row.effective_from, row.note, row.created_by = body.currency, eff, body.note, ident.name
                s.flush()
                return price_json(row)
        except IntegrityError:
            raise Conflict("another version of this price takes effect that day", "exists") from None

    async def edit_price(self, ident: Identity, price_id: int, body: PriceBody | None) -> dict | None:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._edit_price_db, ident, price_id, body)

    # ------------------------------------------------------------------ budgets
    def _visible_tenants(self, ident: Identity):
        if ident.is_admin:
            return None
        return self.ctx.admin_tenants(ident) | set(ident.groups)

    def _budgets_db(self, tenants, q: PageQuery, now: float) -> dict:
        with self.ctx.db.read() as s:
            rows = budget_status(s, tenants, now=now)
        page = rows[q.offset:q.offset + q.limit]
        nxt = q.offset + q.limit if q.offset + q.limit < len(rows) else None
        return {"budgets": page, "total": len(rows), "offset": q.offset, "limit": q.limit, "next_offset": nxt}

    async def budgets(self, ident: Identity, q: PageQuery, now: float | None = None) -> dict:
        return await self.ctx.offload.io(self._budgets_db, self._visible_tenants(ident), q,
                                         time.time() if now is None else now)

    def _set_budget_db(self, ident: Identity, tenant: str, body: BudgetBody | None) -> dict | None:
        if self.ctx.tenant(tenant) is None:
            raise NotFound(f"no tenant {tenant!r}")
        with self.ctx.db.session() as s:
            row = s.get(Budget, tenant)
            if body is None:
                if row is None:
                    raise NotFound(f"tenant {tenant!r} has no budget")
                s.delete(row)
                return None
            if row is None:
                row = Budget(tenant=tenant)
                s.add(row)
            row.amount, row.currency, row.hold = body.amount, body.currency, body.hold
            row.thresholds = sorted(set(body.thresholds))
            row.updated_by, row.updated_at = ident.name, _dt.datetime.utcnow()
        with self.ctx.db.read() as s:
            return budget_status(s, {tenant})[0]

    async def set_budget(self, ident: Identity, tenant: str, body: BudgetBody | None) -> dict | None:
        self.ctx.require_admin(ident)
        out = await self.ctx.offload.io(self._set_budget_db, ident, tenant, body)
        self.ctx.controller.wake()  # the hold is re-checked at the next pass
        return out

    # ------------------------------------------------------------------ reminders
    def _reminders_db(self, ident: Identity, now: float) -> list[dict]:
        out = []
        with self.ctx.db.read() as s:
            tenants = set(ident.groups) | self.ctx.admin_tenants(ident) if not ident.is_admin else set(ident.groups)
            for b in budget_status(s, tenants, now=now):
                if b["warning"] or b["over"]:
                    level = "error" if b["over"] else "warning"
                    held = " New work waits until an admin raises it." if b["holding"] else ""
                    out.append({"kind": "over_budget" if b["over"] else "budget_warning", "level": level,
                                "tenant": b["tenant"],
                                "message": f"Tenant {b['tenant']} has spent {b['fraction']:.0%} of its monthly "
                                           f"budget ({b['spent']:.2f} of {b['amount']:.2f} {b['currency']}).{held}"})
            jobs = s.query(Job.id, Job.tenant, Job.name).filter(Job.user == ident.name, Job.state == QUEUED) \
                .order_by(Job.id).limit(200).all()
            allocs = s.query(Allocation.id, Allocation.tenant, Allocation.profile).filter(
                Allocation.user == ident.name, Allocation.state == ALLOC_PENDING).limit(50).all()
        ctl = self.ctx.controller
        waits = {}
        for j in jobs:
            info = ctl.pending_info(j.id)
            if info is not None and info.reason in ("quota", "over_budget"):
                waits.setdefault((info.reason, j.tenant), []).append(j.id)
        for a in allocs:
            info = ctl.alloc_pending_info(a.id)
            if info is not None and info.reason in ("quota", "over_budget"):
                waits.setdefault((info.reason, a.tenant), []).append(f"server {a.profile}")
        for (reason, tenant), ids in sorted(waits.items()):
            what = "its quota is used up" if reason == "quota" else "it is over its budget"
            out.append({"kind": "over_quota" if reason == "quota" else "over_budget_wait", "level": "warning",
                        "tenant": tenant, "jobs": [i for i in ids if isinstance(i, int)],
                        "message": f"{len(ids)} of your workloads in tenant {tenant} wait because {what}."})
        return out

    async def reminders(self, ident: Identity, now: float | None = None) -> dict:
        return {"reminders": await self.ctx.offload.io(self._reminders_db, ident, time.time() if now is None else now)}
