"""Accounting without a service: what slices charge, the report (rollup + raw edges) against a ledger computed
here second by second, price versions per day, budgets. Real SQLite and PostgreSQL through the real migrations."""
from __future__ import annotations

import datetime as dt
import random
from fractions import Fraction

import pytest

from job_runner.accounting.charge import slice_charge
from job_runner.accounting.prices import PriceBook
from job_runner.accounting.report import usage_report
from job_runner.accounting.rollup import roll_up
from job_runner.accounting.budgets import budget_status
from job_runner.db import open_database
from job_runner.db.accounting import Budget, Price, UsageInterval

DAY = 86400


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/acc.sqlite"
    else:
        url = request.getfixturevalue("postgres").create_db(f"acc_{random.randrange(1 << 30)}")
    d = open_database(url)
    yield d
    d.dispose()


def test_a_share_charges_its_fraction_and_mig_its_compute_slices():
    quarter = slice_charge({"kind": "share", "gpu_milli": 250}, {"node": "n", "gpu_indices": [0], "gpu_milli": 250},
                           lambda n, i: "A100-40GB")
    assert (quarter.gpus, quarter.gpu_model, quarter.slice_kind) == (0.25, "A100-40GB", "share")
    mig = slice_charge({"kind": "mig", "mig_profile": "3g.40gb"},
                       {"node": "n", "gpu_indices": [], "mig": [1, "3g.40gb", 4]}, lambda n, i: "A100-80GB")
    assert mig.gpus == pytest.approx(3 / 7, abs=1e-12) and mig.mig_profile == "3g.40gb"
    whole = slice_charge({"kind": "whole", "gpus": 2, "cpu_milli": 4000, "memory_mib": 8192},
                         {"node": "n", "gpu_indices": [0, 1], "gpu_milli": 1000}, lambda n, i: "H100-80GB")
    assert (whole.gpus, whole.whole_gpus, whole.cpu, whole.memory_gib) == (2.0, 2, 4.0, 8.0)
    assert slice_charge({"kind": "cpu", "cpu_milli": 500}, {"node": "n"}).gpus == 0.0


def _ledger(intervals, a, b, prices):
    """Independent: integer seconds of each interval in each UTC day of [a, b), in exact fractions."""
    out = {}
    for iv in intervals:
        g = Fraction(iv["gpus"])
        for day in range(iv["start_ts"] // DAY, iv["end_ts"] // DAY + 1):
            secs = min(iv["end_ts"], b, (day + 1) * DAY) - max(iv["start_ts"], a, day * DAY)
            if secs > 0:
                r = out.setdefault(iv["tenant"], [Fraction(0), Fraction(0)])
                r[0] += g * secs
                r[1] += g * secs / 3600 * Fraction(prices(iv["gpu_model"], day))
    return out


def test_report_matches_a_ledger_computed_second_by_second(db):
    rnd = random.Random(7)
    base = 20000 * DAY
    intervals = []
    for i in range(300):
        start = base + rnd.randrange(0, 6 * DAY)
        length = rnd.choice([rnd.randrange(1, 3600), rnd.randrange(3600, 2 * DAY), rnd.randrange(1, 4 * DAY)])
        intervals.append({"kind": rnd.choice(["job", "server"]), "workload_id": i, "attempt": 1,
                          "tenant": f"t{i % 3}", "user": f"u{i % 5}", "profile": "p", "slice_kind": "share",
                          "gpu_model": rnd.choice(["A100-40GB", "H100-80GB"]), "gpus": rnd.choice([0.25, 0.5, 1.0, 3 / 7]),
                          "gpu_milli": 0, "whole_gpus": 0, "cpu": 0.0, "memory_gib": 0.0,
                          "start_ts": start, "end_ts": start + length, "long": length > DAY, "idle_s": 0.0})
    change = dt.date(2024, 10, 5)  # day 20001: a price change two days into the data
    with db.session() as s:
        s.add_all([Price(resource="gpu", gpu_model="", unit_price=2.0, effective_from=dt.date(2020, 1, 1)),
                   Price(resource="gpu", gpu_model="H100-80GB", unit_price=4.0, effective_from=dt.date(2020, 1, 1)),
                   Price(resource="gpu", gpu_model="H100-80GB", unit_price=6.0, effective_from=change)])
        s.execute(UsageInterval.__table__.insert(), intervals)
        roll_up(s, intervals)

    def price(model, day):
        if model == "H100-80GB":
            return 6.0 if day >= (change - dt.date(1970, 1, 1)).days else 4.0
        return 2.0

    for a, b in [(base, base + 8 * DAY), (base + 3 * DAY + 4000, base + 5 * DAY + 77), (base + 100, base + 5000),
                 (base + DAY, base + 3 * DAY)]:
        want = _ledger(intervals, a, b, price)
        with db.read() as s:
            got = {r["tenant"]: r for r in usage_report(s, a, b, ("tenant",), now=base + 100 * DAY)}
        assert set(got) == set(want), (a, b)
        for t, (gpu_s, cost) in want.items():
            assert got[t]["gpu_hours"] * 3600 == pytest.approx(float(gpu_s), rel=1e-9), (t, a, b)
            assert got[t]["cost"] == pytest.approx(float(cost), rel=1e-9), (t, a, b)
        # per tenant and day (the chart's grouping): the same figures, day by day
        by_day = {}
        for iv in intervals:
            for day in range(iv["start_ts"] // DAY, iv["end_ts"] // DAY + 1):
                secs = min(iv["end_ts"], b, (day + 1) * DAY) - max(iv["start_ts"], a, day * DAY)
                if secs > 0:
                    key = (iv["tenant"], str(dt.date(1970, 1, 1) + dt.timedelta(days=day)))
                    by_day[key] = by_day.get(key, 0) + Fraction(iv["gpus"]) * secs
        with db.read() as s:
            rows = usage_report(s, a, b, ("tenant", "day"), now=base + 100 * DAY)
        assert {(r["tenant"], r["day"]) for r in rows} == set(by_day)
        for r in rows:
            assert r["gpu_hours"] * 3600 == pytest.approx(float(by_day[(r["tenant"], r["day"])]), rel=1e-9)


def test_open_intervals_count_to_now_and_cost_is_max_of_request_and_usage(db):
    now = 20000 * DAY + 5000
    with db.session() as s:
        s.add(Price(resource="gpu", gpu_model="", unit_price=3.6, effective_from=dt.date(2020, 1, 1)))
        s.add(UsageInterval(kind="server", workload_id=1, attempt=0, tenant="t", user="u", gpu_model="A100-40GB",
                            gpus=0.5, start_ts=now - 3600, end_ts=None, used_gpu_s=3600.0))
    with db.read() as s:
        (r,) = usage_report(s, now - DAY, now + DAY, ("tenant", "user"), now=now)
    assert r["gpu_hours"] == pytest.approx(0.5) and r["charged_gpu_hours"] == pytest.approx(1.0)
    assert r["cost"] == pytest.approx(3.6) and r["servers"] == 1


def test_budget_status_warns_at_thresholds(db):
    now = 20000 * DAY + 7200
    with db.session() as s:
        s.add(Price(resource="gpu", gpu_model="", unit_price=10.0, effective_from=dt.date(2020, 1, 1)))
        s.add(Budget(tenant="t", amount=12.0, thresholds=[0.5, 0.8, 1.0], hold=True))
        s.add(UsageInterval(kind="job", workload_id=1, attempt=1, tenant="t", user="u", gpu_model="X", gpus=1.0,
                            start_ts=now - 3600, end_ts=None))
    with db.read() as s:
        (b,) = budget_status(s, now=now)
    assert b["spent"] == pytest.approx(10.0) and b["crossed"] == [0.5, 0.8] and not b["over"]
    with db.read() as s:
        (b,) = budget_status(s, now=now + 1800)
    assert b["crossed"] == [0.5, 0.8, 1.0] and b["over"] and b["holding"]


def test_new_work_of_a_holding_tenant_is_checked_at_once_not_at_the_next_interval(db):
    """The controller's hold is refreshed every budget_check_interval_s; a job arriving for a tenant whose
    budget can hold is checked against the spend of that moment (CI once admitted a job submitted right
    after the budget ran out, before the next check)."""
    import time

    from job_runner.accounting.recorder import Accounting

    acc = Accounting(db, budget_check_interval_s=3600.0)
    with db.session() as s:
        s.add(Price(resource="gpu", gpu_model="", unit_price=3600.0, effective_from=dt.date(2020, 1, 1)))
        s.add(Budget(tenant="t", amount=1.0, thresholds=[1.0], hold=True))
        s.add(Budget(tenant="w", amount=1.0, thresholds=[1.0], hold=False))
    assert acc.held_tenants() == {}
    with db.session() as s:  # spending does not change the budgets: the cached answer stays until a reason
        for n, tenant in enumerate(("t", "w")):
            s.add(UsageInterval(kind="job", workload_id=n + 1, attempt=1, tenant=tenant, user="u", gpu_model="X",
                                gpus=1.0, start_ts=int(time.time()) - 60, end_ts=None))
    assert acc.held_tenants() == {} and acc.held_tenants(arrivals={"w", "other"}) == {}
    held = acc.held_tenants(arrivals={"t"})
    assert set(held) == {"t"} and "budget" in held["t"], held


def test_idle_spells_from_gpu_monitoring_count_as_idle_gpu_hours(db):
    """The culling engineer's gpu_idle_intervals (issue 15 B) are the idle-held hours of the report."""
    from job_runner.db.monitoring import GPUIdleInterval

    now = 20000 * DAY + 10000
    with db.session() as s:
        s.add(UsageInterval(kind="server", workload_id=9, attempt=0, tenant="t", user="u", gpu_model="A100-40GB",
                            gpus=0.5, start_ts=now - 7200, end_ts=None))
        s.add(GPUIdleInterval(allocation_id=9, tenant="t", user="u", gpu_milli=500, started_at=now - 3600,
                              ended_at=now - 1800, end_reason="active"))
        s.add(GPUIdleInterval(allocation_id=9, tenant="t", user="u", gpu_milli=500, started_at=now - 900, ended_at=None))
    with db.read() as s:
        (r,) = usage_report(s, now - DAY, now, ("tenant", "gpu_model"), now=now)
    assert r["idle_gpu_hours"] == pytest.approx(0.5 * (1800 + 900) / 3600) and r["gpu_hours"] == pytest.approx(1.0)
