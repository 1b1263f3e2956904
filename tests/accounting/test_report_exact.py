"""The report's fast path (8-day blocks, day rollups, SQL-side pricing; job_runner/accounting/report.py) against
a ledger computed here from the intervals alone, second by second in exact fractions, for every grouping the API
offers: random intervals crossing the period's edges, UTC midnights, 8-day block edges and price-book effective
dates, open intervals counted to now, measured usage and idle time added after the close, and a restart between
two rounds of closes (the database reopened; closing an interval again counts nothing). Real SQLite and
PostgreSQL through the real migrations, and the migration that fills usage_block from an older database."""
from __future__ import annotations

import datetime as dt
import itertools
import random
from fractions import Fraction

import pytest
from sqlalchemy import text

from job_runner.accounting.recorder import _close, add_idle, set_used_gpu_s
from job_runner.accounting.report import GROUPS, usage_report
from job_runner.db import open_database, upgrade
from job_runner.db.accounting import Price, UsageInterval

DAY = 86400
BASE = 20000  # a UTC day number that starts an 8-day block (20000 = 8 x 2500)
NOW = (BASE + 30) * DAY + 5 * 3600 + 17
EPOCH = dt.date(1970, 1, 1)


def date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=day)


# the price book of the test, written once as rows and once as this function (the ledger's own lookup)
VERSIONS = [("gpu", "", 2.0, 0), ("gpu", "H100-80GB", 4.0, 0), ("gpu", "H100-80GB", 6.5, BASE + 11),
            ("gpu", "A100-40GB", 3.0, BASE + 16), ("cpu", "", 0.05, 0), ("cpu", "", 0.07, BASE + 5),
            ("memory", "", 0.01, BASE + 20)]


def price(resource: str, model: str, day: int) -> Fraction:
    def find(m):
        got = [(d, p) for r, mm, p, d in VERSIONS if r == resource and mm == m and d <= day]
        return Fraction(max(got)[1]) if got else None
    p = find(model) if model else None
    if p is None:
        p = find("")
    return p if p is not None else Fraction(0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/acc.sqlite"
    return request.getfixturevalue("postgres").create_db(f"accx_{random.randrange(1 << 30)}")


def make_intervals(rnd: random.Random) -> list[dict]:
    out = []
    for i in range(400):
        start = BASE * DAY - 3 * DAY + rnd.randrange(0, 34 * DAY)
        length = rnd.choice([rnd.randrange(1, 3600), rnd.randrange(3600, 2 * DAY), rnd.randrange(DAY, 12 * DAY)])
        model = rnd.choice(["A100-40GB", "H100-80GB", "L4", ""])
        gpus = 0.0 if not model else rnd.choice([0.25, 0.5, 1.0, 3 / 7, 2.0])
        end = start + length
        if start >= NOW:
            continue
        out.append({"kind": rnd.choice(["job", "server"]), "workload_id": i, "attempt": 0,
                    "tenant": f"t{rnd.randrange(3)}",
                    "user": f"u{rnd.randrange(5)}", "profile": "p", "slice_kind": "share" if gpus else "cpu",
                    "gpu_model": model, "gpus": gpus, "gpu_milli": 0, "whole_gpus": 0, "mig_profile": None,
                    "cpu": rnd.choice([0.0, 1.5, 4.0]), "memory_gib": rnd.choice([0.0, 8.0, 16.0]),
                    "start_ts": float(start), "end_ts": None, "long": False, "idle_s": 0.0,
                    # where it ends (None: still open at NOW), and what monitoring adds after the close
                    "_end": None if end >= NOW or rnd.random() < 0.08 else float(end),
                    "_used": rnd.choice([None, None, gpus * length * rnd.uniform(0.5, 1.5)]),
                    "_idle": rnd.choice([0.0, 0.0, rnd.uniform(0, length)])})
    return out


def ledger(intervals, a: float, b: float, group_by, tenants=None, users=None) -> dict:
    """key -> {figure: Fraction}: each interval cut at UTC midnights and clipped to [a, min(b, NOW))."""
    b = min(b, NOW)
    out = {}
    for iv in intervals:
        if (tenants is not None and iv["tenant"] not in tenants) or (users is not None and iv["user"] not in users):
            continue
        s0 = Fraction(iv["start_ts"])
        e0 = Fraction(iv["_end"] if iv["_end"] is not None else NOW)
        dur = e0 - s0
        g, cpu, mem = Fraction(iv["gpus"]), Fraction(iv["cpu"]), Fraction(iv["memory_gib"])
        req = g * dur
        used = iv["_used"] if iv["_end"] is not None else None
        charged = req if used is None else max(req, Fraction(used))
        idle = Fraction(iv["_idle"]) if iv["_end"] is not None else Fraction(0)

        def row(day):
            vals = {"tenant": iv["tenant"], "user": iv["user"], "day": str(date(day)),
                    "gpu_model": iv["gpu_model"] or None, "kind": iv["kind"]}
            return out.setdefault(tuple(vals[k] for k in group_by), {
                "gpu_s": Fraction(0), "charged_s": Fraction(0), "cpu_s": Fraction(0), "mem_s": Fraction(0),
                "idle_s": Fraction(0), "held_s": Fraction(0), "jobs": 0, "servers": 0, "gpu_cost": Fraction(0),
                "cpu_cost": Fraction(0), "memory_cost": Fraction(0)})
        for day in range(int(s0 // DAY), int(e0 // DAY) + 1):
            lo, hi = max(s0, Fraction(a), Fraction(day * DAY)), min(e0, Fraction(b), Fraction((day + 1) * DAY))
            if hi <= lo:
                continue
            secs = hi - lo
            r = row(day)
            ch = charged * secs / dur
            r["gpu_s"] += g * secs
            r["charged_s"] += ch
            r["cpu_s"] += cpu * secs
            r["mem_s"] += mem * secs
            r["idle_s"] += idle * secs / dur * g
            r["held_s"] += secs
            r["gpu_cost"] += ch / 3600 * price("gpu", iv["gpu_model"], day)
            r["cpu_cost"] += cpu * secs / 3600 * price("cpu", "", day)
            r["memory_cost"] += mem * secs / 3600 * price("memory", "", day)
        if a <= iv["start_ts"] < b:
            row(int(s0 // DAY))["jobs" if iv["kind"] == "job" else "servers"] += 1
    return out


def check(got: list[dict], want: dict, group_by, what) -> None:
    assert {tuple(r[k] for k in group_by) for r in got} == set(want), what
    assert len(got) == len(want), what
    for r in got:
        w = want[tuple(r[k] for k in group_by)]
        for fig, key in (("gpu_hours", "gpu_s"), ("charged_gpu_hours", "charged_s"), ("cpu_core_hours", "cpu_s"),
                         ("memory_gib_hours", "mem_s"), ("idle_gpu_hours", "idle_s"), ("held_hours", "held_s")):
            # exact to the millisecond of resource-time (to the second is the promise)
            assert abs(r[fig] * 3600 - float(w[key])) < 1e-3, (what, r, fig, float(w[key]))
        for fig in ("gpu_cost", "cpu_cost", "memory_cost"):
            assert abs(r[fig] - float(w[fig])) < 1e-6, (what, r, fig, float(w[fig]))  # far below a cent
        assert abs(r["cost"] - float(w["gpu_cost"] + w["cpu_cost"] + w["memory_cost"])) < 1e-6, (what, r)
        assert (r["jobs"], r["servers"]) == (w["jobs"], w["servers"]), (what, r, w)


def _close_some(db, intervals, ids) -> None:
    with db.session() as s:
        rows = {iv.workload_id: iv for iv in s.query(UsageInterval).filter(UsageInterval.workload_id.in_(ids))}
        _close(s, [(rows[i], next(x["_end"] for x in intervals if x["workload_id"] == i), "succeeded") for i in ids])


def test_fast_report_matches_an_exact_ledger_for_every_grouping_across_a_restart(url):
    rnd = random.Random(1511)
    intervals = make_intervals(rnd)
    db = open_database(url)
    with db.session() as s:
        s.add_all([Price(resource=r, gpu_model=m, unit_price=p, effective_from=date(d) if d else dt.date(2020, 1, 1))
                   for r, m, p, d in VERSIONS])
        s.execute(UsageInterval.__table__.insert(), [{k: v for k, v in iv.items() if not k.startswith("_")}
                                                     for iv in intervals])
    closing = [iv["workload_id"] for iv in intervals if iv["_end"] is not None]
    first, second = closing[:len(closing) // 2], closing[len(closing) // 2:]
    _close_some(db, intervals, first)
    db.dispose()
    db = open_database(url)  # a restart: a new engine, the migrations checked again, the rollups as written
    try:
        _close_some(db, intervals, second + first[:40])  # the repair closes again some already closed: no effect
        with db.session() as s:
            for iv in intervals:
                if iv["_end"] is None:
                    continue
                if iv["_used"] is not None:
                    assert set_used_gpu_s(s, iv["kind"], iv["workload_id"], iv["_used"])
                if iv["_idle"]:
                    assert add_idle(s, iv["kind"], iv["workload_id"], iv["_idle"])
        with db.read() as s:
            assert s.execute(text("SELECT COUNT(*) FROM usage_block")).scalar() > 0
        periods = [
            (BASE * DAY - 3 * DAY, NOW + DAY),                     # everything, ends after now (open ones to now)
            (BASE * DAY + 3 * DAY + 4000, BASE * DAY + 27 * DAY + 77),  # mid-day to mid-day: blocks + edge days
            ((BASE + 8) * DAY, (BASE + 24) * DAY),                 # exactly two whole blocks
            ((BASE + 11) * DAY, (BASE + 21) * DAY - 1),            # from a price change, across a block edge
            ((BASE + 9) * DAY + 100, (BASE + 9) * DAY + 5000),     # inside one day
            ((BASE + 1) * DAY, (BASE + 6) * DAY),                  # whole days inside one block
            (NOW - 3 * DAY - 7, NOW + 10 * DAY),                   # the last days, partly in the future
        ]
        groupings = [g for n in (1, 2) for g in itertools.combinations(GROUPS, n)] + [GROUPS]
        for a, b in periods:
            for gb in groupings:
                with db.read() as s:
                    got = usage_report(s, a, b, gb, now=NOW)
                check(got, ledger(intervals, a, b, gb), gb, (a, b, gb))
            for tenants, users in (({"t1"}, None), (None, {"u2"}), ({"t0", "t2"}, {"u1", "u3"})):
                for gb in (("tenant",), ("user",), ("tenant", "user"), ("user", "day"), ("gpu_model", "kind")):
                    with db.read() as s:
                        got = usage_report(s, a, b, gb, tenants=tenants, users=users, now=NOW)
                    check(got, ledger(intervals, a, b, gb, tenants, users), gb, (a, b, gb, tenants, users))
    finally:
        db.dispose()


def test_migration_0011_fills_the_blocks_from_an_older_rollup(url):
    """A database written before usage_block existed: upgrading fills it from usage_daily, and reports agree."""
    db = open_database(url, migrate=False)
    try:
        upgrade(db.engine, url, "0010")
        rows = [{"day": BASE - 1 + d, "tenant": f"t{d % 2}", "user": "u", "gpu_model": "H100-80GB", "kind": "job",
                 "gpu_s": 100.0 * d, "charged_gpu_s": 150.0 * d, "cpu_s": 1.0, "mem_gib_s": 2.0, "idle_gpu_s": 0.5,
                 "held_s": 10.0, "runs": d} for d in range(20)]
        with db.engine.begin() as c:
            c.execute(text('INSERT INTO usage_daily (day, tenant, "user", gpu_model, kind, gpu_s, charged_gpu_s, '
                           "cpu_s, mem_gib_s, idle_gpu_s, held_s, runs) VALUES (:day, :tenant, :user, :gpu_model, "
                           ":kind, :gpu_s, :charged_gpu_s, :cpu_s, :mem_gib_s, :idle_gpu_s, :held_s, :runs)"), rows)
        upgrade(db.engine, url)
        with db.engine.connect() as c:
            got = {(b, t): (g, r) for b, t, g, r in c.execute(text(
                "SELECT blk, tenant, gpu_s, runs FROM usage_block ORDER BY blk, tenant"))}
        want = {}
        for r in rows:
            w = want.setdefault((r["day"] // 8, r["tenant"]), [0.0, 0])
            w[0] += r["gpu_s"]
            w[1] += r["runs"]
        assert got == {k: tuple(v) for k, v in want.items()}
    finally:
        db.dispose()
