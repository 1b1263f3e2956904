"""Benchmark: an accounting report over 100 tenants x 90 days of 10,000 workloads a day (900k usage intervals)
on SQLite, grouped by tenant (and by tenant and user), with partial first and last days and open intervals.

Prints the time of ``usage_report`` (daily rollup for whole days + raw intervals for the edges) and of a
baseline in the same process: the same GPU-hours summed straight from the raw intervals in one SQL query
(no rollup, no per-day pricing), and their ratio. Goal (issue 15): the report in < 1 s.

    .venv/bin/python benchmarks/accounting_report.py [--tenants 100] [--days 90] [--per-day 10000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import text  # noqa: E402

from job_runner.accounting.report import usage_report  # noqa: E402
from job_runner.accounting.rollup import DAY, roll_up  # noqa: E402
from job_runner.db import open_database  # noqa: E402
from job_runner.db.accounting import Price, UsageInterval  # noqa: E402

MODELS = ("A100-40GB", "H100-80GB")
GPUS = (0.25, 0.5, 1.0, 3 / 7, 2.0, 0.0)


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


def timed(fn, repeat=3):
    best, out = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        dt_ = time.perf_counter() - t0
        best = dt_ if best is None else min(best, dt_)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--per-day", type=int, default=10000)
    ap.add_argument("--db", help="keep the database in this file (filled once, reused by later runs)")
    args = ap.parse_args()
    rnd = random.Random(15)
    with tempfile.TemporaryDirectory() as d:
        path = args.db or f"{d}/bench.sqlite"
        reuse = os.path.exists(path)
        db = open_database(f"sqlite:///{path}")
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
            rollup_rows = s.execute(text("SELECT COUNT(*) FROM usage_daily")).scalar()
        print(f"intervals: {n:,}  rollup rows: {rollup_rows:,}  "
              + (f"(reused {path})" if reuse else f"(filled in {fill:.1f} s, rollup written as they closed)"))

        def report(group_by):
            with db.read() as s:
                return usage_report(s, a, now, group_by, now=now)
        t_rep, rows = timed(lambda: report(("tenant",)))
        t_user, urows = timed(lambda: report(("tenant", "user")))
        t_base, base = timed(lambda: baseline(db, a, now))
        worst = max(abs(r["gpu_hours"] - base[r["tenant"]]) for r in rows)
        print(f"report by tenant:        {t_rep * 1000:8.1f} ms  ({len(rows)} rows)  goal < 1000 ms: "
              f"{'met' if t_rep < 1 else 'MISSED'}")
        print(f"report by tenant, user:  {t_user * 1000:8.1f} ms  ({len(urows)} rows)")
        print(f"baseline (raw SQL sum):  {t_base * 1000:8.1f} ms  (GPU-hours only, no cost per day)")
        print(f"ratio baseline / report: {t_base / t_rep:8.2f}x   largest GPU-hour difference: {worst:.2e}")
        db.dispose()


if __name__ == "__main__":
    main()
