"""Usage and cost reports for any period, grouped by tenant / user / day / GPU model / kind.

Whole UTC days come from the daily rollup (closed intervals); the partial days at the period's edges and
every open interval come from the raw intervals, cut with the same ``day_parts`` (job_runner.accounting.rollup).
Each day's part is priced with the price book version in force that day. ``jobs``/``servers`` count the job
attempts / server allocations whose interval started in the period.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import func, or_, select

from job_runner.db.accounting import UsageDaily, UsageInterval

from .prices import PriceBook, day_date
from .rollup import DAY, SUMS, interval_parts

GROUPS = ("tenant", "user", "day", "gpu_model", "kind")
FIGURES = ("gpu_hours", "charged_gpu_hours", "cpu_core_hours", "memory_gib_hours", "idle_gpu_hours",
           "held_hours", "jobs", "servers", "gpu_cost", "cpu_cost", "memory_cost", "cost")


class _Acc:
    def __init__(self, group_by, book: PriceBook):
        self.group_by, self.book, self.rows = tuple(group_by), book, {}

    def add(self, day, tenant, user, model, kind, sums: dict, runs: int = 0):
        vals = {"tenant": tenant, "user": user, "day": day, "gpu_model": model, "kind": kind}
        key = tuple(vals[g] for g in self.group_by)
        r = self.rows.get(key)
        if r is None:
            r = self.rows[key] = dict.fromkeys(SUMS, 0.0) | {"jobs": 0, "servers": 0, "gpu_cost": 0.0,
                                                             "cpu_cost": 0.0, "memory_cost": 0.0}
        for k in SUMS:
            r[k] += sums.get(k, 0.0)
        r["jobs" if kind == "job" else "servers"] += runs
        g, c, m = self.book.cost(day, model, sums.get("charged_gpu_s", 0.0), sums.get("cpu_s", 0.0),
                                 sums.get("mem_gib_s", 0.0))
        r["gpu_cost"] += g
        r["cpu_cost"] += c
        r["memory_cost"] += m

    def result(self) -> list[dict]:
        out = []
        for key in sorted(self.rows, key=lambda k: tuple("" if x is None else x for x in k)):
            r = self.rows[key]
            row = dict(zip(self.group_by, key))
            if "day" in row:
                row["day"] = day_date(row["day"]).isoformat()
            if "gpu_model" in row:
                row["gpu_model"] = row["gpu_model"] or None
            row.update(gpu_hours=r["gpu_s"] / 3600, charged_gpu_hours=r["charged_gpu_s"] / 3600,
                       cpu_core_hours=r["cpu_s"] / 3600, memory_gib_hours=r["mem_gib_s"] / 3600,
                       idle_gpu_hours=r["idle_gpu_s"] / 3600, held_hours=r["held_s"] / 3600,
                       jobs=r["jobs"], servers=r["servers"], gpu_cost=r["gpu_cost"], cpu_cost=r["cpu_cost"],
                       memory_cost=r["memory_cost"], cost=r["gpu_cost"] + r["cpu_cost"] + r["memory_cost"],
                       currency=self.book.currency)
            out.append(row)
        return out


def _filters(model, tenants, users):
    f = []
    if tenants is not None:
        f.append(model.tenant.in_(sorted(tenants)))
    if users is not None:
        f.append(model.user.in_(sorted(users)))
    return f


def _raw(s, acc: _Acc, a: float, b: float, flt) -> None:
    """Closed intervals overlapping [a, b), clipped to it (short ones start at most a day before ``a``)."""
    iv = UsageInterval
    q = select(*_cols()).where(iv.end_ts.isnot(None), iv.end_ts > a, iv.start_ts < b, *flt(iv)).where(
        or_(iv.start_ts >= a - DAY, iv.long.is_(True)))
    for r in s.execute(q):
        _add_interval(acc, r, a, b, None)


def _cols():
    iv = UsageInterval
    return (iv.kind, iv.tenant, iv.user, iv.gpu_model, iv.gpus, iv.cpu, iv.memory_gib, iv.start_ts, iv.end_ts,
            iv.idle_s, iv.used_gpu_s)


def _add_interval(acc, r, a, b, now):
    runs = 1 if a <= r.start_ts < b else 0
    for day, part in interval_parts(r, a, b, now):
        acc.add(day, r.tenant, r.user, r.gpu_model or "", r.kind, part, runs)
        runs = 0
    if runs:  # zero-length interval started in the period
        acc.add(int(math.floor(r.start_ts / DAY)), r.tenant, r.user, r.gpu_model or "", r.kind, {}, 1)


def usage_report(s, start: float, end: float, group_by=("tenant",), tenants=None, users=None,
                 now: float | None = None, book: PriceBook | None = None) -> list[dict]:
    """Usage and cost in [start, end) (epoch seconds), one row per group. ``tenants``/``users``: only
    these (None: all)."""
    now = time.time() if now is None else now
    bad = [g for g in group_by if g not in GROUPS]
    if bad:
        raise ValueError(f"group_by must be among {GROUPS}, not {bad}")
    acc = _Acc(group_by, book or PriceBook.load(s))
    end = min(end, now)
    if end <= start:
        return []
    d1, d2 = int(math.ceil(start / DAY)), int(math.floor(end / DAY))

    def flt(model):
        return _filters(model, tenants, users)

    if d1 < d2:
        u = UsageDaily
        cols = [u.day, u.tenant, u.gpu_model, u.kind]
        if "user" in group_by:
            cols.insert(2, u.user)
        q = select(*cols, *[func.sum(getattr(u, c)) for c in SUMS], func.sum(u.runs)) \
            .where(u.day >= d1, u.day < d2, *flt(u)).group_by(*cols)
        for row in s.execute(q):
            row = tuple(row)
            if "user" in group_by:
                day, tenant, user, model, kind = row[:5]
                rest = row[5:]
            else:
                day, tenant, model, kind = row[:4]
                user, rest = None, row[4:]
            acc.add(day, tenant, user, model, kind, dict(zip(SUMS, rest[:-1])), int(rest[-1] or 0))
        segments = [(start, d1 * DAY), (d2 * DAY, end)]
    else:
        segments = [(start, end)]
    for a, b in segments:
        if b > a:
            _raw(s, acc, a, b, flt)
    iv = UsageInterval
    for r in s.execute(select(*_cols()).where(iv.end_ts.is_(None), iv.start_ts < end, *flt(iv))):
        _add_interval(acc, r, start, end, now)
    _idle_spells(s, acc, start, end, now, flt)
    return acc.result()


def _idle_spells(s, acc: _Acc, start: float, end: float, now: float, flt) -> None:
    """Idle-held GPU time of servers from GPU monitoring's ``gpu_idle_intervals`` (issue 15 B: one row per
    idle spell, gpu_milli held, NULL end = idle now), clipped to the period, per day."""
    from job_runner.db.monitoring import GPUIdleInterval as gi

    q = s.query(gi).filter(gi.started_at < end, or_(gi.ended_at.is_(None), gi.ended_at > start), *flt(gi))
    spells = q.all()
    if not spells:
        return
    models = {}
    ids = sorted({x.allocation_id for x in spells})
    for i in range(0, len(ids), 900):
        models.update(s.query(UsageInterval.workload_id, UsageInterval.gpu_model).filter(
            UsageInterval.kind == "server", UsageInterval.workload_id.in_(ids[i:i + 900])).all())
    for x in spells:
        lo, hi = max(x.started_at, start), min(x.ended_at if x.ended_at is not None else now, end)
        t = lo
        while t < hi:
            day = int(math.floor(t / DAY))
            nxt = min(hi, (day + 1) * DAY)
            acc.add(day, x.tenant, x.user, models.get(x.allocation_id) or "", "server",
                    {"idle_gpu_s": (x.gpu_milli or 0) / 1000.0 * (nxt - t)})
            t = nxt
