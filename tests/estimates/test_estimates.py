"""Start estimates: from the user's expected duration or the history of similar jobs, as a range, and
"unknown" when nothing tells (no made-up default duration).

Closes: estimates off by hours and shown to the second ("starts in 9h 37m" for a job that started after
100 s): they came from default durations.

The core tests are pure (the scheduling core has no clock); the controller tests use the real Controller,
the real core and a real SQLite database with rows as POST jobs writes them (tests/job_service's
HeldExecutor runs nothing: no notebook needs to run for an estimate).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from job_runner.db import SUCCEEDED, Job, utcnow
from job_runner.scheduling import Tenant
from job_runner.scheduling.estimates import USER_HIGH, USER_LOW, describe_wait, history_range
from spawner.allocation import start_words
from tests.job_service.test_controller import HeldExecutor, env, submit  # noqa: F401 (env: a fixture)
from tests.scheduling.helpers import inventory, job, scheduler, whole


def pending_of(decision, w):
    return next(p for p in decision.pending if p.workload.id == w.id)


# ---- the pure core -----------------------------------------------------------------------------------------
def test_with_an_expected_duration_the_estimate_is_a_range_around_it():
    """Closes: estimates from default durations: the user's expected_duration_s gives a range around it."""
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=[Tenant("a", {})])
    first = job("a", whole(1), duration=600)
    s.submit(first)
    s.schedule(1000)
    waiting = job("a", whole(1))
    s.submit(waiting)
    p = pending_of(s.schedule(1100), waiting)
    assert p.estimated_start == pytest.approx(1600)
    assert p.earliest_start == pytest.approx(1000 + 600 * USER_LOW)
    assert p.latest_start == pytest.approx(1000 + 600 * USER_HIGH)
    assert describe_wait(p.earliest_start - 1100, p.latest_start - 1100) == "6–15 min"


def test_with_history_the_range_comes_from_past_runs():
    """Closes: estimates from default durations: past run times (median, quartiles) give the range."""
    past = [300, 420, 480, 500, 540, 600, 900]
    lo, mid, hi = history_range(past)
    assert (lo, mid, hi) == (450, 500, 570)
    assert history_range([600, 800]) == (600, 700, 800)  # few runs: their extremes
    assert history_range([]) is None
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=[Tenant("a", {})])
    from job_runner.scheduling import Workload
    first = Workload("hist", "a", "u", "job", "normal", whole(1), 0.0, mid, (lo, hi))
    s.submit(first)
    s.schedule(1000)
    waiting = job("a", whole(1))
    s.submit(waiting)
    p = pending_of(s.schedule(1100), waiting)
    assert (p.earliest_start, p.estimated_start, p.latest_start) == (1450, 1500, 1570)


def test_with_nothing_to_go_on_the_estimate_is_unknown():
    """Closes: "starts in 9h 37m" from the default server duration for a job that started after 100 s."""
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=[Tenant("a", {})])
    server = job("a", whole(1), kind="server")  # a server says nothing about when it ends
    s.submit(server)
    s.schedule(1000)
    waiting = job("a", whole(1), duration=60)
    s.submit(waiting)
    p = pending_of(s.schedule(1100), waiting)
    assert p.estimated_start is None and p.latest_start is None
    assert p.position == 1 and p.reason == "capacity"
    assert start_words({"estimated_start": None}) == "start time unknown"


def test_work_ahead_runs_in_waves_of_its_own_durations_and_unknown_work_ahead_makes_it_unknown():
    """Closes: estimates from default durations (queued work ahead, not a default, sets the waves)."""
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=[Tenant("a", {})])
    s.submit(job("a", whole(1), duration=600))
    s.schedule(0)
    known, unknown, last = job("a", whole(1), duration=1200), job("a", whole(1)), job("a", whole(1))
    for w in (known, unknown, last):
        s.submit(w)
    d = s.schedule(100)
    assert pending_of(d, known).estimated_start == pytest.approx(600)
    assert pending_of(d, unknown).estimated_start == pytest.approx(600 + 1200)
    assert pending_of(d, last).estimated_start is None  # behind a job nothing tells the length of


def test_words_are_rounded_never_a_timestamp():
    """Closes: "estimated start 2026-12-02T04:48:22.850927Z" for a 12 s wait (the spawn page's message)."""
    now = time.time()

    def at(s):
        return dt.datetime.fromtimestamp(now + s, dt.timezone.utc).replace(tzinfo=None).isoformat() + "Z"

    assert start_words({"estimated_start": at(12)}, now) == "starts within a minute"
    assert start_words({"estimated_start": at(577)}, now) == "starts in about 10 min"
    assert start_words({"estimated_start": at(900), "estimated_start_earliest": at(600),
                        "estimated_start_latest": at(1200)}, now) == "starts in 10–20 min"
    assert describe_wait(34620) == "about 10 h"


# ---- history in the job system -----------------------------------------------------------------------------
def add_past_runs(db, durations, user="alice", profile="gpu-1", notebook_path="work/train.ipynb"):
    now = utcnow()
    with db.session() as s:
        for d in durations:
            start = now - dt.timedelta(hours=2)
            s.add(Job(name="train", user=user, tenant="team-a", profile=profile, state=SUCCEEDED, notebook="{}",
                      notebook_path=notebook_path, parameters={}, request={}, attempt=1, created_at=start,
                      started_at=start, finished_at=start + dt.timedelta(seconds=d), updated_at=now,
                      cancel_requested=0, enqueued=1, retry_on=[]))


def test_the_controller_estimates_from_history_and_from_the_users_figure(env):  # noqa: F811
    """Closes: estimates from default durations: a job without expected_duration_s is taken to run as long
    as the same user's past runs of the same notebook and profile; one with it, as the user says."""
    add_past_runs(env.db, [500, 600, 700, 800, 900])  # median 700, quartiles 600..800
    add_past_runs(env.db, [5], notebook_path="other.ipynb")  # another notebook does not count
    ctl = env.controller(HeldExecutor())
    running = [submit(env.db, notebook_path="work/train.ipynb"), submit(env.db, expected_duration_s=3000)]
    waiting = submit(env.db)

    async def main():
        t0 = time.time()
        await ctl.tick()
        return t0, time.time(), ctl.pending_info(waiting)

    t0, t1, info = asyncio.run(main())
    assert info.position == 1
    # the first slice frees after the history's range: 600..800 s after it started (700 expected)
    assert t0 + 600 - 1 <= info.earliest_start <= t1 + 600 + 1
    assert t0 + 700 - 1 <= info.estimated_start <= t1 + 700 + 1
    assert t0 + 800 - 1 <= info.latest_start <= t1 + 800 + 1
    assert [s[0] for s in ctl.executor.started] == running


def test_the_controller_says_unknown_with_nothing_to_go_on(env):  # noqa: F811
    """Closes: estimates from default durations: no expected duration and no history gives no figure."""
    ctl = env.controller(HeldExecutor())
    submit(env.db, notebook_path="fresh.ipynb")
    submit(env.db, notebook_path="fresh.ipynb")
    waiting = submit(env.db)

    async def main():
        await ctl.tick()
        return ctl.pending_info(waiting)

    info = asyncio.run(main())
    assert info.position == 1 and info.estimated_start is None and info.latest_start is None
