"""The accounting API behind a real JupyterHub (real tokens and groups): budgets warn and hold new work
(a job waits with ``over_budget`` and runs once the budget is raised), reminders, CSV download, scopes (a
member cannot see another tenant's report), the price book's versions. Jobs run the stand-in runner of
tests/job_service (no kernel); no GPU exists here: the inventory is configured."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os

import pytest
import requests

from tests.job_service.helpers import PYTHON, ServiceProcess, make_notebook, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(os.path.dirname(HERE), "job_service", "quick_runner.py")
NB = make_notebook("print(i)", params="i = 0")


@pytest.fixture(scope="module")
def svc(hub, deployment_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("acc")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "Accounting": {"budget_check_interval_s": 0.3},
           "Isolation": {"mode": "single-user"},
           "LocalExecutor": {"runner_command": [PYTHON, "-S", RUNNER], "kill_grace_s": 1,
                             "extra_env": {"AISTACK_TEST_RUNS_LOG": str(d / "runs.log"), "AISTACK_TEST_RUN_MAX_S": "0.3"}}}
    p = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                       port=hub["service_port"], config=cfg)
    p.env["PYTHONPATH"] = os.path.dirname(HERE).rsplit(os.sep, 1)[0]
    p.start()
    yield p
    p.stop()


def session(token):
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    return s


def test_budget_warns_holds_and_releases_and_scopes(hub, svc):
    admin = session(hub["admin_token"])
    dave, alice, carol = (session(hub["tokens"][u]) for u in ("dave", "alice", "carol"))
    api = svc.api + "accounting/"
    # price book: one GPU-hour costs 3600, so one GPU-second costs 1
    r = admin.post(api + "prices", json={"resource": "gpu", "unit_price": 3600.0, "effective_from": "2020-01-01"})
    assert r.status_code == 201, r.text
    past_id = r.json()["id"]
    r = admin.put(api + f"prices/{past_id}", json={"resource": "gpu", "unit_price": 1.0, "effective_from": "2020-01-01"})
    assert r.status_code == 409 and r.json()["error"] == "price_in_force", r.text
    future = str(dt.date.today() + dt.timedelta(days=30))
    r = admin.post(api + "prices", json={"resource": "gpu", "unit_price": 7200.0, "effective_from": future})
    assert r.status_code == 201, r.text
    assert admin.delete(api + f"prices/{r.json()['id']}").status_code == 204
    assert dave.post(api + "prices", json={"resource": "cpu", "unit_price": 1.0,
                                           "effective_from": future}).status_code == 403
    assert admin.get(api + "prices", params={"limit": 1}).json()["total"] == 1

    r = admin.put(api + "budgets/team-b", json={"amount": 1.0, "thresholds": [0.5, 1.0], "hold": True})
    assert r.status_code == 200 and r.json()["spent"] == 0, r.text
    assert dave.put(api + "budgets/team-b", json={"amount": 99.0}).status_code == 403
    # dave holds half a GPU for a while: spend 0.5 per second
    r = admin.post(svc.api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-half", "wait": 20})
    assert r.status_code in (200, 201) and r.json()["state"] == "allocated", r.text
    alloc = r.json()["id"]

    def crossed():
        b = dave.get(api + "budgets").json()["budgets"]
        return b if b and b[0]["over"] else None
    (b,) = wait_for(crossed, 30, 0.2, "team-b over budget")
    assert b["tenant"] == "team-b" and b["crossed"] == [0.5, 1.0] and b["holding"]
    assert admin.delete(svc.api + f"allocations/{alloc}").status_code == 200
    rem = dave.get(api + "reminders").json()["reminders"]
    assert [x["kind"] for x in rem] == ["over_budget"] and "team-b" in rem[0]["message"], rem

    r = dave.post(svc.api + "jobs", json={"notebook": NB, "profile": "cpu", "tenant": "team-b"})
    assert r.status_code == 201, r.text
    job = r.json()["jobs"][0]["id"] if "jobs" in r.json() else r.json()["id"]
    wait_for(lambda: dave.get(svc.api + f"jobs/{job}").json().get("pending_reason") == "over_budget", 30, 0.2,
             "the job to wait with over_budget")
    rem = dave.get(api + "reminders").json()["reminders"]
    assert {"over_budget", "over_budget_wait"} == {x["kind"] for x in rem}, rem
    assert dave.get(svc.api + f"jobs/{job}").json()["state"] == "queued"
    r = admin.put(api + "budgets/team-b", json={"amount": 1e6, "thresholds": [0.5, 1.0], "hold": True})
    assert r.status_code == 200 and not r.json()["holding"], r.text
    wait_for(lambda: dave.get(svc.api + f"jobs/{job}").json()["state"] == "succeeded", 60, 0.3,
             "the job to run once the budget was raised")

    # scopes: a member sees their own usage, not another tenant's; a tenant admin their tenant's
    r = dave.get(api + "report", params={"tenant": "team-a"})
    assert r.status_code == 403, r.text
    mine = dave.get(api + "report", params={"group_by": "tenant,user"}).json()
    assert {row["user"] for row in mine["rows"]} == {"dave"} and mine["rows"][0]["servers"] == 1
    assert alice.get(api + "report", params={"user": "dave"}).status_code == 403
    assert carol.get(api + "report", params={"tenant": "team-b"}).status_code == 403
    assert carol.get(api + "report", params={"tenant": "team-a"}).status_code == 200
    assert {b["tenant"] for b in alice.get(api + "budgets").json()["budgets"]} == set()

    # CSV, by Accept and by ?format=csv; the figures are the JSON report's
    js = admin.get(api + "report", params={"group_by": "tenant,user"}).json()
    for r in (admin.get(api + "report", params={"group_by": "tenant,user"}, headers={"Accept": "text/csv"}),
              admin.get(api + "report", params={"group_by": "tenant,user", "format": "csv"})):
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [(x["tenant"], x["user"]) for x in rows] == [(x["tenant"], x["user"]) for x in js["rows"]]
        dave_row = next(x for x in rows if x["user"] == "dave")
        assert float(dave_row["cost"]) == pytest.approx(next(x for x in js["rows"] if x["user"] == "dave")["cost"],
                                                         abs=1e-5)
        assert float(dave_row["cost"]) >= 1.0  # over the first budget: that is what held the job
    page = admin.get(api + "report", params={"group_by": "tenant,user", "limit": 1}).json()
    assert len(page["rows"]) == 1 and page["next_offset"] == (1 if page["total"] > 1 else None)
    assert admin.get(api + "report", params={"start": "nonsense"}).status_code == 400
