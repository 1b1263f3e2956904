"""concurrency_policy in the real service (real hub tokens, real database, no user's server): a per-2-second
schedule whose job runs far longer than the interval. Forbid: the slots that fall while the previous job is
still running are recorded as skipped (with the fire they yielded to) and no second job starts; Replace:
the running job is cancelled and the new slot's job starts. The jobs run on the NoopExecutor (what they
run does not matter here; its long ``duration_s`` stands in for a long notebook)."""
from __future__ import annotations

import pytest

from tests.job_service.helpers import ServiceProcess, wait_for

from .conftest import config

CRON = "* * * * * */2"  # every 2 s (croniter's seconds field); ScheduleSettings.min_interval_s is 1 here
TARGET = {"path": "nb.ipynb", "profile": "cpu"}


@pytest.fixture(scope="module")
def long_jobs_service(hub, deployment_path, tmp_path_factory, homes):
    d = tmp_path_factory.mktemp("svc-concurrency")
    cfg = config(homes, 0.0)
    cfg["NoopExecutor"]["duration_s"] = 120.0  # every job outlives the test: the policy always has a live run
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                         port=hub["service_port"], config=cfg)
    svc.start()
    yield svc
    svc.stop()


def _create(s, api, name, policy):
    r = s.post(api + "schedules", json={"name": name, "kind": "notebook", "target": {**TARGET, "name": name},
                                        "cron": CRON, "concurrency_policy": policy})
    assert r.status_code == 201, r.text
    assert r.json()["concurrency_policy"] == policy
    return r.json()["id"]


def _history(s, api, sid):
    return sorted(s.get(f"{api}schedules/{sid}").json()["history"], key=lambda f: f["slot"])


def _job(s, api, job_id):
    return s.get(f"{api}jobs/{job_id}").json()


def _cancel_all(s, api, hist):
    for f in hist:
        if f["job_id"]:
            s.post(f"{api}jobs/{f['job_id']}/cancel")


def test_forbid_skips_slots_while_the_run_goes_on(hub, long_jobs_service):
    api = long_jobs_service.api
    s = long_jobs_service.session(hub["tokens"]["alice"])
    sid = _create(s, api, "forbid", "Forbid")
    first = wait_for(lambda: [f for f in _history(s, api, sid) if f["job_id"]], 20, 0.2, "the first fire's job")[0]
    wait_for(lambda: _job(s, api, first["job_id"])["state"] == "running", 20, 0.2, "the first job to run")
    skipped = wait_for(lambda: [f for f in _history(s, api, sid) if f["state"] == "skipped"][:3] if len(
        [f for f in _history(s, api, sid) if f["state"] == "skipped"]) >= 3 else None, 20, 0.3, "three skipped slots")
    assert s.post(f"{api}schedules/{sid}/pause").json()["paused"] is True
    hist = wait_for(lambda: (lambda h: h if not any(f["state"] == "firing" for f in h) else None)(
        _history(s, api, sid)), 20, 0.3, "no fire in flight")
    try:
        for f in skipped:
            assert f["slot"] > first["slot"] and f["job_id"] is None and f["finished_at"], f
            assert f["reason"] == f"Forbid: the run of fire {first['id']} is still going", f
        # the running job was left alone and it is the only job this schedule ever started
        assert _job(s, api, first["job_id"])["state"] == "running"
        with_jobs = [f for f in hist if f["job_id"]]
        assert [f["id"] for f in with_jobs] == [first["id"]], hist
        assert {f["state"] for f in hist} == {"submitted", "skipped"}, hist
        mine = [j for j in s.get(api + "jobs", params={"limit": 500}).json()["jobs"] if j["name"] == "forbid"]
        assert [j["id"] for j in mine] == [first["job_id"]], mine
        print(f"Forbid: 1 job ran, {len(hist) - 1} slots skipped while it ran")
    finally:
        _cancel_all(s, api, hist)


def test_replace_cancels_the_running_job_and_starts_the_new_one(hub, long_jobs_service):
    api = long_jobs_service.api
    s = long_jobs_service.session(hub["tokens"]["alice"])
    sid = _create(s, api, "replace", "Replace")
    first = wait_for(lambda: [f for f in _history(s, api, sid) if f["job_id"]], 20, 0.2, "the first fire's job")[0]
    wait_for(lambda: _job(s, api, first["job_id"])["state"] == "running", 20, 0.2, "the first job to run")
    second = wait_for(lambda: [f for f in _history(s, api, sid) if f["job_id"] and f["slot"] > first["slot"]],
                      20, 0.2, "the next slot's job")[0]
    assert s.post(f"{api}schedules/{sid}/pause").json()["paused"] is True
    try:
        # the replaced job is cancelled (the controller stops it) and its fire ends as cancelled
        wait_for(lambda: _job(s, api, first["job_id"])["state"] == "cancelled", 20, 0.2, "the first job cancelled")
        wait_for(lambda: next(f for f in _history(s, api, sid) if f["id"] == first["id"])["state"] == "cancelled",
                 20, 0.2, "the first fire to end as cancelled")
        assert second["job_id"] != first["job_id"]
        wait_for(lambda: _job(s, api, second["job_id"])["state"] == "running", 20, 0.2, "the new job to run")
        hist = wait_for(lambda: (lambda h: h if not any(f["state"] == "firing" for f in h) else None)(
            _history(s, api, sid)), 20, 0.3, "no fire in flight")
        assert not any(f["state"] == "skipped" for f in hist), hist  # Replace never skips a slot
        # at most one of this schedule's jobs is live at the end: every older one was replaced
        live = [f for f in hist if f["job_id"] and _job(s, api, f["job_id"])["state"] not in ("cancelled",)]
        assert len(live) == 1 and live[0]["id"] == hist[-1]["id"], [(f["id"], f["state"]) for f in hist]
        print(f"Replace: {len(hist)} fires, each replacing the one before; the newest job runs")
    finally:
        _cancel_all(s, api, _history(s, api, sid))
