"""Schedules in the real service (real hub tokens, real database, no user's server): an every-minute cron
fires within 5 s of its time; per-second crons across a service restart (catch-up none / latest / all);
pause, resume, run now; Forbid; a failure notifies the owner (notification + webhook); bad input 400."""
from __future__ import annotations

import datetime as dt
import time

from tests.job_service.helpers import wait_for

from .conftest import parse_iso

TARGET = {"path": "nb.ipynb", "profile": "cpu"}


def _create(s, api, **body):
    body.setdefault("kind", "notebook")
    body.setdefault("target", TARGET)
    r = s.post(api + "schedules", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _history(s, api, sid):
    return s.get(f"{api}schedules/{sid}").json()["history"]


def test_every_minute_fires_within_5s(hub, schedule_service):
    api, off = schedule_service.api, schedule_service.offset
    s = schedule_service.session(hub["tokens"]["alice"])
    sid = _create(s, api, name="minutely", cron="* * * * *", timezone="Europe/Berlin")
    fired = wait_for(lambda: [f for f in _history(s, api, sid) if f["job_id"]], 75, 0.2, "the minute's fire")
    f = fired[0]
    slot = parse_iso(f["slot"])
    assert slot.second == 0
    lag = (parse_iso(f["created_at"]) + dt.timedelta(seconds=off) - slot).total_seconds()
    assert 0 <= lag <= 5, f"fired {lag:.2f} s after its slot"
    job = s.get(f"{api}jobs/{f['job_id']}").json()
    assert job["user"] == "alice" and job["tenant"] == "team-a"
    job_lag = (parse_iso(job["created_at"]) + dt.timedelta(seconds=off) - slot).total_seconds()
    assert job_lag <= 5, job_lag
    print(f"every-minute schedule: fired {lag:.2f} s after its slot, job submitted at +{job_lag:.2f} s")
    assert s.post(f"{api}schedules/{sid}/pause").json()["paused"] is True


# A fire later than its deadline counts as missed: 2 s, so that a loaded CI machine's normal lag (a pass
# every fraction of a second) is never taken for a missed slot; down long enough to miss several slots.
DEADLINE_S, DOWN_S = 2, 6


def test_catch_up_across_a_restart(hub, schedule_service):
    api, off = schedule_service.api, schedule_service.offset
    s = schedule_service.session(hub["tokens"]["alice"])
    ids = {p: _create(s, api, name=f"sec-{p}", cron="* * * * * *", catch_up=p, catch_up_max=100,
                      starting_deadline_s=DEADLINE_S) for p in ("none", "latest", "all")}
    wait_for(lambda: all(len(_history(s, api, i)) >= 2 for i in ids.values()), 60, 0.2, "fires before the stop")
    schedule_service.stop()
    down_at = time.time()
    time.sleep(DOWN_S)  # the scenario itself: the service is down (no synchronisation waits on this)
    schedule_service.start()
    up_at = time.time()
    wait_for(lambda: all(any(parse_iso(f["created_at"]).timestamp() >= up_at - 1 and f["state"] != "skipped"
                             for f in _history(s, api, i)) for i in ids.values()), 90, 0.3, "fires after the restart")
    for i in ids.values():
        s.post(f"{api}schedules/{i}/pause")
    wait_for(lambda: not any(f["state"] == "firing" for i in ids.values() for f in _history(s, api, i)), 60, 0.3,
             "the caught-up fires to be submitted")
    for policy, sid in ids.items():
        hist = sorted(_history(s, api, sid), key=lambda f: f["slot"])
        slots = [parse_iso(f["slot"]) for f in hist]
        # every second from the first slot to the last is there once: nothing silently dropped, nothing twice
        assert len(set(slots)) == len(slots)
        assert (slots[-1] - slots[0]).total_seconds() == len(slots) - 1, (policy, [f["slot"] for f in hist])
        # the slots handled after the restart: skipped ones (missed, not caught up) and caught-up ones
        after = [f for f in hist if parse_iso(f["created_at"]).timestamp() >= down_at]
        skipped = [f for f in after if f["state"] == "skipped"]
        caught = [f for f in after if f["state"] != "skipped" and "caught up" in (f["reason"] or "")]
        assert all("missed" in f["reason"] for f in skipped), skipped
        for f in caught:  # a caught-up slot was late: its time had passed by more than the deadline
            lag = (parse_iso(f["created_at"]) + dt.timedelta(seconds=off) - parse_iso(f["slot"])).total_seconds()
            assert lag > DEADLINE_S, (f, lag)
        if policy == "all":
            assert not skipped and len(caught) >= 3 and all(f["job_id"] for f in caught), after
        else:
            assert len(skipped) >= 2, after
            nxt = [f for f in after if parse_iso(f["slot"]) > parse_iso(skipped[-1]["slot"])]
            assert nxt and nxt[0]["state"] != "skipped" and nxt[0]["job_id"]  # then the slots run again
            # none: nothing caught up; latest: exactly one, the newest missed slot
            assert len(caught) == (0 if policy == "none" else 1), (policy, caught)
            if policy == "latest":
                assert caught[0]["slot"] == nxt[0]["slot"], (caught, nxt[0])
        print(f"catch_up {policy}: {len(skipped)} missed slots skipped, {len(caught)} caught up")


def test_pause_run_now_failure_and_bad_input(hub, schedule_service, webhook):
    api = schedule_service.api
    s = schedule_service.session(hub["tokens"]["alice"])
    for body, code in (({"cron": "61 * * * *"}, "bad_cron"), ({"cron": "* * *"}, "bad_cron"),
                       ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "bad_timezone"),
                       ({"cron": "* * * * *", "concurrency_policy": "Sometimes"}, "bad_policy"),
                       ({"cron": "* * * * *", "target": {"path": "nb.ipynb", "profile": "gpu-huge"}}, "unknown_profile")):
        r = s.post(api + "schedules", json={"name": "bad", "kind": "notebook", "target": TARGET, **body})
        assert r.status_code == 400 and r.json()["error"] == code, (body, r.text)
    r = s.post(api + "schedules", json={"name": "bad", "kind": "pipeline", "cron": "* * * * *",
                                        "target": {"spec": "name: p\ntasks:\n  - name: a\n    notebook: a.ipynb\n"}})
    assert r.status_code == 400 and r.json()["line"] == 3, r.text  # the task at fault (it has no profile)

    # run now (paused or not), and pause stops the cron
    sid = _create(s, api, name="daily", cron="0 3 * * *", timezone="Asia/Shanghai")
    assert s.post(f"{api}schedules/{sid}/pause").json()["paused"] is True
    r = s.post(f"{api}schedules/{sid}/run")
    assert r.status_code == 201, r.text
    hist = r.json()["history"]
    assert len(hist) == 1 and hist[0]["manual"] and hist[0]["job_id"], hist
    assert s.post(f"{api}schedules/{sid}/resume").json()["paused"] is False

    # a schedule whose job cannot be submitted (bob has no nb.ipynb): the fire failed, bob is told in the
    # lab (notifications) and through the webhook
    bob = schedule_service.session(hub["tokens"]["bob"])
    fsid = _create(bob, api, name="broken", cron="* * * * * *", concurrency_policy="Forbid")
    fails = wait_for(lambda: [f for f in _history(bob, api, fsid) if f["state"] == "failed"], 20, 0.3, "a failed fire")
    assert "not submitted" in fails[0]["reason"]
    bob.post(f"{api}schedules/{fsid}/pause")
    notes = bob.get(api + "notifications").json()["notifications"]
    assert any(n["kind"] == "schedule_failed" and "broken" in n["message"] for n in notes), notes
    assert not s.get(api + "notifications").json()["notifications"] or all(
        "broken" not in n["message"] for n in s.get(api + "notifications").json()["notifications"])
    hook = wait_for(lambda: [h for h in webhook.got if h["schedule"] == "broken"], 10, 0.2, "the webhook call")
    assert hook[0]["user"] == "bob" and hook[0]["kind"] == "schedule_failed"
