"""Usage and cost reports for any period, grouped by tenant / user / day / GPU model / kind.

Whole UTC days come from the daily rollup (closed intervals); the partial days at the period's edges and
every open interval come from the raw intervals, cut with the same ``day_parts`` (job_runner.accounting.rollup).
Each day's part is priced with the price book version in force that day. ``jobs``/``servers`` count the job
attempts / server allocations whose interval started in the period.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import and_, case, func, or_, select

from job_runner.db.accounting import UsageDaily, UsageDailyTenant, UsageInterval

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


def _raw(s, acc: _Acc, a: float, b: float, flt, by_user: bool) -> None:
    """Closed intervals overlapping [a, b) — a part of one UTC day — clipped to it and summed in SQL (the
    same arithmetic as ``day_parts``). Two index range scans: short intervals (<= 1 day) start at most a day
    before ``a`` (``+ 0`` keeps SQLite off the end_ts index, which would scan every later interval); long
    ones come from the (long, start_ts) index."""
    iv = UsageInterval
    pg = s.get_bind().dialect.name == "postgresql"
    least, greatest = (func.least, func.greatest) if pg else (func.min, func.max)
    dur = iv.end_ts - iv.start_ts
    over = least(iv.end_ts, b) - greatest(iv.start_ts, a)
    frac = case((dur > 0, over / dur), else_=0.0)
    req = iv.gpus * dur
    charged = case((iv.used_gpu_s.is_(None), req), (iv.used_gpu_s > req, iv.used_gpu_s), else_=req)
    keys = [iv.tenant, iv.gpu_model, iv.kind] + ([iv.user] if by_user else [])
    sums = [func.sum(iv.gpus * over), func.sum(charged * frac), func.sum(iv.cpu * over),
            func.sum(iv.memory_gib * over), func.sum(iv.idle_s * frac * iv.gpus), func.sum(over),
            func.sum(case((and_(iv.start_ts >= a, iv.start_ts < b), 1), else_=0))]
    day = int(math.floor(a / DAY))
    for cond in ((iv.start_ts >= a - DAY, iv.long.is_(False)), (iv.long.is_(True),)):
        q = select(*keys, *sums).where(*cond, iv.start_ts < b, (iv.end_ts + 0) > a, *flt(iv)).group_by(*keys)
        for row in s.execute(q):
            tenant, model, kind = row[0], row[1], row[2]
            user = row[3] if by_user else None
            vals = row[4:] if by_user else row[3:]
            acc.add(day, tenant, user, model or "", kind, dict(zip(SUMS, (float(v or 0) for v in vals[:-1]))),
                    int(vals[-1] or 0))


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
        # Whole days from the rollup, one aggregate per run of days with the same prices (few: one more than
        # the price changes in the period), so that 90 days x 100 tenants come back as a few hundred rows.
        by_user, by_day = "user" in group_by, "day" in group_by
        u = UsageDaily if by_user or users is not None else UsageDailyTenant
        cols = [u.tenant, u.gpu_model, u.kind] + ([u.user] if by_user else []) + ([u.day] if by_day else [])
        cuts = [d1] + [d for d in acc.book.change_days() if d1 < d < d2] + [d2]
        for lo, hi in zip(cuts, cuts[1:]):
            q = select(*cols, *[func.sum(getattr(u, c)) for c in SUMS], func.sum(u.runs)) \
                .where(u.day >= lo, u.day < hi, *flt(u)).group_by(*cols)
            for row in s.execute(q):
                tenant, model, kind = row[0], row[1], row[2]
                k = 3
                user = row[k] if by_user else None
                k += by_user
                day = row[k] if by_day else lo
                k += by_day
                acc.add(day, tenant, user, model, kind, dict(zip(SUMS, row[k:k + len(SUMS)])), int(row[-1] or 0))
        segments = [(start, d1 * DAY), (d2 * DAY, end)]
    else:
        segments = [(start, end)]
    for a0, b0 in segments:
        a = a0
        while a < b0:  # cut at UTC midnights: each raw part lies in one day
            b = min(b0, (math.floor(a / DAY) + 1) * DAY)
            _raw(s, acc, a, b, flt, "user" in group_by)
            a = b
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
