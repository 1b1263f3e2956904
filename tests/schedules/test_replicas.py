"""Two service replicas on one PostgreSQL (as tests/replicas runs them), both firing schedules
(``ScheduleSettings.leader_only`` off, so that only the (schedule, slot) row keeps them apart): every slot
of a per-second schedule runs exactly once, and both replicas won some slots."""
from __future__ import annotations

import collections

from tests.job_service.helpers import wait_for

from .conftest import config


def test_two_replicas_never_run_a_slot_twice(hub, postgres, deployment_path, tmp_path, homes):
    url = postgres.create_db("schedrep")
    cfg = config(homes, 0.0, leader_only=False)
    cfg["AIStackService"]["run_files"] = "database"
    from tests.job_service.helpers import ServiceProcess

    a = ServiceProcess(str(tmp_path / "a"), url, deployment_path, hub_api_url=hub["api"], config=cfg)
    b = ServiceProcess(str(tmp_path / "b"), url, deployment_path, hub_api_url=hub["api"], config=cfg)
    a.start()
    b.start()
    try:
        s = a.session(hub["tokens"]["alice"])
        r = s.post(a.api + "schedules", json={"name": "rep", "kind": "notebook", "cron": "* * * * * *",
                                              "target": {"path": "nb.ipynb", "profile": "cpu", "name": "rep-job"}})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]

        def enough():
            h = s.get(f"{a.api}schedules/{sid}").json()["history"]
            return h if len([f for f in h if f["job_id"]]) >= 8 else None

        wait_for(enough, 40, 0.3, "eight fires")
        s.post(f"{a.api}schedules/{sid}/pause")
        hist = wait_for(lambda: (lambda h: h if not any(f["state"] == "firing" for f in h) else None)(
            s.get(f"{b.api}schedules/{sid}").json()["history"]), 20, 0.3, "the last fires to be submitted")
        slots = collections.Counter(f["slot"] for f in hist)
        assert max(slots.values()) == 1, slots
        jobs = s.get(a.api + "jobs", params={"limit": 500}).json()["jobs"]
        mine = [j for j in jobs if j["name"] == "rep-job"]
        fired = [f for f in hist if f["job_id"]]
        assert len(mine) == len(fired) and {j["id"] for j in mine} == {f["job_id"] for f in fired}, (mine, fired)
        replicas = {f["replica"] for f in hist}
        assert len(replicas) == 2, f"one replica won every slot ({replicas}): the race was not exercised"
        print(f"two replicas: {len(fired)} slots, each run once; won by {collections.Counter(f['replica'] for f in hist)}")
    finally:
        a.stop()
        b.stop()
