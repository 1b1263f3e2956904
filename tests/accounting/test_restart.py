"""Accounting is exact across a service kill: jobs (1/4 GPU shares and whole GPUs) and server slices run
while the real service process is SIGKILLed twice and restarted; afterwards every interval the accounting
recorded equals, to the millisecond, the one the test computes from the workloads' own history (job events,
allocation rows), none is missing, none is doubled, none stays open, and the report's GPU-hours and cost are
the ledger's. The jobs run the reliability tests' stand-in runner (tests/job_service/quick_runner.py: the
real LocalExecutor, process groups and adoption; no kernel), since no GPU exists here the inventory is
configured (the slices are bookkeeping, as in tests/job_service)."""
from __future__ import annotations

import datetime as dt
import time

import requests
from sqlalchemy import create_engine, text

from tests.job_service.helpers import SERVICE_TOKEN, make_notebook, wait_for
from tests.job_service.test_reliability import db_jobs, quick_service

from .ledger import ledger, recorded, rollup_gpu_s

NB = make_notebook("print(i)", params="i = 0")
FINAL = ("succeeded", "failed", "cancelled")


def _open_count(db_url):
    rec = recorded(db_url)
    return sum(1 for v in rec.values() if v[1] is None)


def test_intervals_exact_across_sigkill(tmp_path, deployment_path):
    db_url = f"sqlite:///{tmp_path}/aistack.sqlite"
    svc = quick_service(tmp_path, db_url, deployment_path, run_max_s=1.5).start()
    s = requests.Session()
    s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
    try:
        r = s.post(svc.api + "accounting/prices", json={"resource": "gpu", "unit_price": 2.0,
                                                        "effective_from": "2020-01-01"})
        assert r.status_code == 201, r.text
        r = s.post(svc.api + "jobs", json={"notebook": NB, "profile": "gpu-quarter", "tenant": "team-c",
                                           "max_retries": 2, "sweep": {"i": list(range(16))}})
        assert r.status_code == 201, r.text
        r = s.post(svc.api + "jobs", json={"notebook": NB, "profile": "gpu-1", "tenant": "team-a",
                                           "max_retries": 2, "sweep": {"i": list(range(6))}})
        assert r.status_code == 201, r.text
        allocs = []
        for user in ("alice", "bob"):
            r = s.post(svc.api + "allocations", json={"user": user, "tenant": "team-a", "profile": "gpu-half",
                                                      "wait": 20})
            assert r.status_code in (200, 201), r.text
            allocs.append(r.json()["id"])
        for _ in range(2):  # kill while intervals are open
            wait_for(lambda: _open_count(db_url) >= 2, 60, 0.1, "open intervals")
            svc.kill()
            time.sleep(0.5)
            svc.start()
        r = s.delete(svc.api + f"allocations/{allocs[0]}")
        assert r.status_code == 200, r.text

        def all_final():
            jobs = db_jobs(db_url)
            return jobs if jobs and all(j.state in FINAL for j in jobs.values()) else None
        wait_for(all_final, 180, 0.5, "every job to end")
        svc.kill()  # the second server's release is written while the service is down ...
        released = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        eng = create_engine(db_url)
        with eng.begin() as c:
            c.execute(text("UPDATE allocations SET state='released', released_at=:t WHERE id=:i"),
                      {"t": released, "i": allocs[1]})
        eng.dispose()
        svc.start()  # ... and the interval is closed from that event's time on recovery
        wait_for(lambda: _open_count(db_url) == 0, 30, 0.2, "no interval left open")
        want, got = ledger(db_url), recorded(db_url)
        assert set(got) == set(want), (set(want) - set(got), set(got) - set(want))
        for key, (start, end, gpus) in want.items():
            g = got[key]
            assert abs(g[0] - start) < 1e-3 and abs(g[1] - end) < 1e-3 and g[2] == gpus, (key, g, (start, end, gpus))
        total_gpu_s = sum((e - b) * g for b, e, g in want.values())
        assert abs(rollup_gpu_s(db_url) - total_gpu_s) < 1e-3
        r = s.get(svc.api + "accounting/report", params={"start": str(dt.date.today() - dt.timedelta(days=2)),
                                                         "end": str(dt.date.today() + dt.timedelta(days=2)),
                                                         "group_by": "tenant"})
        assert r.status_code == 200, r.text
        rep = r.json()
        assert abs(rep["totals"]["gpu_hours"] * 3600 - total_gpu_s) < 1e-3
        assert abs(rep["totals"]["cost"] - total_gpu_s / 3600 * 2.0) < 1e-6
        per = {row["tenant"]: row for row in rep["rows"]}
        assert per["team-c"]["jobs"] == sum(1 for k in want if k[0] == "job" and k[1] <= 16)
        assert per["team-a"]["servers"] == 2
    finally:
        svc.stop()
