"""Benchmark: accounting reports over 100 tenants x 90 days of 10,000 workloads a day (~900k usage intervals)
on SQLite, for every grouping the API offers (tenant, user, day, gpu_model, kind and the combinations people
ask for), with partial first and last days, a price change mid-period and open intervals.

Prints, per grouping, the time of ``usage_report`` (rollups: 8-day blocks / days, partial days from the raw
intervals) and of the previous implementation run in the same process on the same data (``old_report`` below:
whole days from ``usage_daily`` through the ORM, every rollup row priced in Python), their ratio, and the
largest difference between the two over every figure of every row (hours, cost, jobs, servers). Also the
GPU-hours summed straight from the raw intervals in one SQL query (an independent check). Goal (issue 15):
each report in < 1 s.

    .venv/bin/python benchmarks/accounting_report.py [--db FILE] [--tenants 100] [--days 90] [--per-day 10000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import func, select, text  # noqa: E402

from job_runner.accounting import report as rep  # noqa: E402
from job_runner.accounting.prices import PriceBook, day_date  # noqa: E402
from job_runner.accounting.report import FIGURES, usage_report  # noqa: E402
from job_runner.accounting.rollup import DAY, SUMS, roll_up  # noqa: E402
from job_runner.db import open_database  # noqa: E402
from job_runner.db.accounting import Price, UsageDaily, UsageDailyTenant, UsageInterval  # noqa: E402

MODELS = ("A100-40GB", "H100-80GB")
GPUS = (0.25, 0.5, 1.0, 3 / 7, 2.0, 0.0)
GROUPINGS = ("tenant", "tenant,user", "user", "day", "tenant,day", "user,day", "gpu_model", "kind",
             "gpu_model,kind", "tenant,user,day,gpu_model,kind")


class _OldAcc:
    """The previous accumulator (a dict per row, every part priced through PriceBook.cost)."""

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


def old_report(s, start, end, group_by, now, tenants=None, users=None):
    """The previous usage_report: whole days from usage_daily(_tenant) through the ORM, one query per run of
    equal prices grouped by tenant/model/kind(/user/day), each row priced in Python; the partial days, open
    intervals and idle spells through the same helpers as today (job_runner.accounting.report)."""
    acc = _OldAcc(group_by, PriceBook.load(s))
    end = min(end, now)
    if end <= start:
        return []
    d1, d2 = int(math.ceil(start / DAY)), int(math.floor(end / DAY))

    def flt(model):
        return rep._filters(model, tenants, users)

    if d1 < d2:
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
        while a < b0:
            b = min(b0, (math.floor(a / DAY) + 1) * DAY)
            rep._raw(s, acc, a, b, flt, "user" in group_by)
            a = b
    iv = UsageInterval
    for r in s.execute(select(*rep._cols()).where(iv.end_ts.is_(None), iv.start_ts < end, *flt(iv))):
        rep._add_interval(acc, r, start, end, now)
    rep._idle_spells(s, acc, start, end, now, flt)
    return acc.result()


def populate(db, tenants: int, days: int, per_day: int, now: float, rnd: random.Random) -> int:
    first = int(now // DAY) - days + 1
    wid, n = 0, 0
    with db.session() as s:
        s.add_all([Price(resource="gpu", gpu_model="", unit_price=2.0, effective_from=dt.date(2020, 1, 1)),
                   Price(resource="gpu", gpu_model="H100-80GB", unit_price=4.0, effective_from=dt.date(2020, 1, 1)),
                   Price(resource="gpu", gpu_model="H100-80GB", unit_price=5.0,
                         effective_from=dt.date(1970, 1, 1) + dt.timedelta(days=first + days // 2)),
                   Price(resource="cpu", gpu_model="", unit_price=0.05, effective_from=dt.date(2020, 1, 1))])
    for day in range(first, first + days):
        rows = []
        for _ in range(per_day):
            wid += 1
            server = rnd.random() < 0.1
            start = day * DAY + rnd.uniform(0, DAY)
            length = rnd.expovariate(1 / (8 * 3600 if server else 1200))
            end = start + length
            if end > now:
                continue
            t = rnd.randrange(tenants)
            rows.append({"kind": "server" if server else "job", "workload_id": wid, "attempt": 0 if server else 1,
                         "tenant": f"tenant-{t:03d}", "user": f"user-{t:03d}-{rnd.randrange(5)}", "profile": "p",
                         "slice_kind": "share", "gpu_model": rnd.choice(MODELS), "gpus": rnd.choice(GPUS),
                         "gpu_milli": 0, "whole_gpus": 0, "cpu": 2.0, "memory_gib": 8.0, "start_ts": start,
                         "end_ts": end, "long": length > DAY, "idle_s": 0.0})
        with db.session() as s:
            s.execute(UsageInterval.__table__.insert(), rows)
            roll_up(s, rows)
        n += len(rows)
    with db.session() as s:  # a few workloads still running
        s.execute(UsageInterval.__table__.insert(), [
            {"kind": "server", "workload_id": wid + i, "attempt": 0, "tenant": f"tenant-{i % tenants:03d}",
             "user": f"user-{i % tenants:03d}-0", "profile": "p", "slice_kind": "whole", "gpu_model": MODELS[0],
             "gpus": 1.0, "gpu_milli": 1000, "whole_gpus": 1, "cpu": 4.0, "memory_gib": 16.0,
             "start_ts": now - rnd.uniform(0, 3 * DAY), "end_ts": None, "long": False, "idle_s": 0.0}
            for i in range(1, 101)])
    return n + 100


def baseline(db, a: float, b: float) -> dict:
    q = text("SELECT tenant, SUM(gpus * (MIN(COALESCE(end_ts, :now), :b) - MAX(start_ts, :a))) FROM usage_intervals "
             "WHERE start_ts < :b AND COALESCE(end_ts, :now) > :a GROUP BY tenant")
    with db.read() as s:
        return {t: v / 3600 for t, v in s.execute(q, {"a": a, "b": b, "now": b})}


def timed_pair(new, old, repeat):
    """Best wall and CPU time of each of two functions, run alternately (a machine shared with other work slows
    both alike). CPU time is this process's (SQLite runs in it): what the code costs, without the waits."""
    best = {"new": [None, None], "old": [None, None]}
    out = {}
    for _ in range(repeat):
        for name, fn in (("old", old), ("new", new)):
            w0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            b = best[name]
            b[0] = w if b[0] is None else min(b[0], w)
            b[1] = c if b[1] is None else min(b[1], c)
    return best["new"], best["old"], out["new"], out["old"]


def differences(new: list[dict], old: list[dict], keys) -> tuple[float, float]:
    """(largest |difference| of an hours figure, of a cost figure) between two reports with the same rows; an
    AssertionError when the rows or the counts differ."""
    assert [tuple(r[k] for k in keys) for r in new] == [tuple(r[k] for k in keys) for r in old], "rows differ"
    hours = cost = 0.0
    for n, o in zip(new, old):
        assert (n["jobs"], n["servers"], n["currency"]) == (o["jobs"], o["servers"], o["currency"]), (n, o)
        for f in FIGURES:
            d = abs(n[f] - o[f])
            if f.endswith("cost"):
                cost = max(cost, d)
            elif f not in ("jobs", "servers"):
                hours = max(hours, d)
    return hours, cost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--per-day", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of each report")
    ap.add_argument("--db", help="keep the database in this file (filled once, reused by later runs)")
    args = ap.parse_args()
    rnd = random.Random(15)
    with tempfile.TemporaryDirectory() as d:
        path = args.db or f"{d}/bench.sqlite"
        reuse = os.path.exists(path)
        t0 = time.perf_counter()
        db = open_database(f"sqlite:///{path}")  # an older file gets migration 0011 (usage_block filled) here
        migrate = time.perf_counter() - t0
        t0 = time.perf_counter()
        if reuse:
            with db.read() as s:
                now = float(s.execute(text("SELECT MAX(end_ts) FROM usage_intervals")).scalar()) + 1
                n = s.execute(text("SELECT COUNT(*) FROM usage_intervals")).scalar()
        else:
            now = float(int(time.time()))
            n = populate(db, args.tenants, args.days, args.per_day, now, rnd)
        fill = time.perf_counter() - t0
        a = (int(now // DAY) - args.days + 1) * DAY + 0.37 * DAY  # a partial first day
        with db.read() as s:
            daily, blocks = (s.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
                             for t in ("usage_daily", "usage_block"))
        print(f"intervals: {n:,}  usage_daily rows: {daily:,}  usage_block rows: {blocks:,}  "
              + (f"(reused {path}; opening/migrating it {migrate:.1f} s)" if reuse
                 else f"(filled in {fill:.1f} s, rollups written as they closed)"))
        print(f"period: {dt.datetime.utcfromtimestamp(a)} .. {dt.datetime.utcfromtimestamp(now)} UTC, "
              f"best of {args.repeat} (old and new alternately); load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs")
        print(f"{'group_by':32s} {'rows':>7s} {'report wall (cpu)':>19s} {'old path wall (cpu)':>21s} "
              f"{'ratio':>6s}  {'max diff h':>10s} {'max diff cost':>13s}  goal < 1 s")
        worst_new = 0.0
        cases = [(g, None) for g in GROUPINGS] + [("tenant,user", {"tenant-007"})]
        for g, tenants in cases:
            gb = tuple(g.split(","))

            def new():
                with db.read() as s:
                    return usage_report(s, a, now, gb, tenants=tenants, now=now)

            def old():
                with db.read() as s:
                    return old_report(s, a, now, gb, now, tenants=tenants)
            (t_new, c_new), (t_old, c_old), r, o = timed_pair(new, old, args.repeat)
            dh, dc = differences(r, o, gb)
            worst_new = max(worst_new, t_new)
            label = g + (f" (tenant={sorted(tenants)[0]})" if tenants else "")
            print(f"{label:32s} {len(r):7d} {t_new * 1000:8.1f} ({c_new * 1000:6.1f}) ms "
                  f"{t_old * 1000:8.1f} ({c_old * 1000:6.1f}) ms {t_old / t_new:5.1f}x  "
                  f"{dh:10.1e} {dc:13.1e}  {'met' if t_new < 1 else 'MISSED'}")
            if g == "tenant" and tenants is None:
                base = baseline(db, a, now)
                check = max(abs(x["gpu_hours"] - base[x["tenant"]]) for x in r)
        print(f"slowest report: {worst_new * 1000:.1f} ms; GPU-hours per tenant against one raw SQL sum over the "
              f"intervals: largest difference {check:.2e}")
        db.dispose()


if __name__ == "__main__":
    main()
