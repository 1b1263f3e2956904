"""Tenant budgets: month-to-date spend (UTC calendar month) against each budget, the thresholds crossed, and
the hold: a tenant with ``hold`` whose spend reached its budget gets no new work admitted (pending reason
``over_budget``, job_runner.scheduling.Scheduler.hold) until the budget is raised or the month turns. Running
work is never stopped by a budget."""
from __future__ import annotations

import calendar
import datetime as _dt
import time

from sqlalchemy import func

from job_runner.db.accounting import Budget

from .report import usage_report


def month_start(now: float) -> float:
    d = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    return float(calendar.timegm((d.year, d.month, 1, 0, 0, 0)))


def budgets_key(db) -> tuple:
    """Changes whenever a budget is added, changed or removed (cheap: one aggregate)."""
    with db.read() as s:
        n, latest = s.query(func.count(Budget.tenant), func.max(Budget.updated_at)).one()
    return int(n or 0), latest


def holding_budgets(db) -> frozenset[str]:
    """The tenants whose budget has ``hold`` (their new work may wait)."""
    with db.read() as s:
        return frozenset(t for (t,) in s.query(Budget.tenant).filter(Budget.hold.is_(True)))


def budget_json(b, spent: float, now: float) -> dict:
    fraction = spent / b.amount if b.amount > 0 else (1.0 if spent > 0 else 0.0)
    over = spent >= b.amount
    crossed = sorted(t for t in (b.thresholds or []) if fraction >= t)
    return {"tenant": b.tenant, "amount": b.amount, "currency": b.currency, "thresholds": list(b.thresholds or []),
            "hold": bool(b.hold), "period": "month",
            "period_start": _dt.datetime.fromtimestamp(month_start(now), _dt.timezone.utc).date().isoformat(),
            "spent": spent, "fraction": fraction, "crossed": crossed, "warning": bool(crossed), "over": over,
            "holding": bool(b.hold) and over, "updated_by": b.updated_by,
            "updated_at": b.updated_at.isoformat() + "Z" if b.updated_at else None}


def budget_status(s, tenants=None, now: float | None = None) -> list[dict]:
    """The budgets (of ``tenants``, None: all) with their month-to-date spend, in session ``s``."""
    now = time.time() if now is None else now
    q = s.query(Budget)
    if tenants is not None:
        q = q.filter(Budget.tenant.in_(sorted(tenants)))
    rows = q.order_by(Budget.tenant).all()
    if not rows:
        return []
    spend = {r["tenant"]: r["cost"] for r in usage_report(s, month_start(now), now, ("tenant",),
                                                           tenants={b.tenant for b in rows}, now=now)}
    return [budget_json(b, spend.get(b.tenant, 0.0), now) for b in rows]


def hold_reasons(db, now: float | None = None) -> dict[str, str]:
    """Tenants whose new work waits now -> the message a user sees."""
    with db.read() as s:
        return {b["tenant"]: (f"tenant {b['tenant']!r} spent {b['spent']:.2f} {b['currency']} of its "
                              f"{b['amount']:.2f} {b['currency']} budget this month: new work waits until an "
                              f"admin raises the budget")
                for b in budget_status(s, now=now) if b["holding"]}
