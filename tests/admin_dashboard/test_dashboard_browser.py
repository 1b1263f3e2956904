"""The admin page as a dashboard, in a real browser: Debian's Chromium driven by playwright-core
(browser/dashboard.js) against a real AIStack Hub (``aistack-hub up``: JupyterHub with NativeAuthenticator,
the proxy, the aistack service). Screenshots: test-artifacts/admin_dashboard/*.png (looked at by the author).

No GPU exists here: the GPU samples (six hours of utilisation of the configured GPUs) are fed into the
service's database as the monitor would have written them (``job_runner.monitoring.store``); the
GPU-hours come from server slices and jobs written with past times, as the real service records them.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess

import pytest
import requests

from tests.hub.launcher import PASSWORD, REPO, running_hub

ARTIFACTS = os.path.join(REPO, "test-artifacts", "admin_dashboard")
CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")
TENANTS = ("team-a", "team-b", "team-c")
CONFIG = {
    "Authenticator": {"admin_users": ["admin"]},
    "Monitor": {"interval_s": 5},
    # a small limit, so the proxy's refusal can be seen without sending a megabyte
    "AIStackService": {"admin_proxy_max_body_bytes": 4096},
    "tenants": [{"name": t, "quotas": {"any": {"gpu_milli": 4000}}} for t in TENANTS],
    "profiles": [{"slug": "gpu-1", "display_name": "1 GPU",
                  "request": {"kind": "whole", "gpus": 1, "cpu_milli": 200, "memory_mib": 512}}],
    "inventory": [{"name": "test-node", "cpu_milli": 8000, "memory_mib": 32768,
                   "gpus": [{"model": "A100-80GB"}, {"model": "A100-80GB"}]}],
}


def feed_history(db_url: str):
    """Six hours of GPU samples of the two configured GPUs, three days of slices, a day of jobs."""
    from job_runner.db import ALLOC_RELEASED, SUCCEEDED, Allocation, Job, open_database
    from job_runner.monitoring import store
    from job_runner.monitoring.samples import GPUSample, Reading

    db = open_database(db_url)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    for k in range(72):  # every 5 min
        ts = now - 6 * 3600 + k * 300
        store.write_samples(db, Reading(ts=ts, gpus=[
            GPUSample("test-node", "0", util_pct=50 + 45 * math.sin(k / 8), mem_used_mib=30000, model="A100-80GB"),
            GPUSample("test-node", "1", util_pct=5 + (k % 12) * 2.0, mem_used_mib=8000, model="A100-80GB")]), [])
    utc_now = dt.datetime.utcnow()
    whole = {"kind": "whole", "gpus": 1, "cpu_milli": 200, "memory_mib": 512}
    with db.session() as s:
        for day in range(3):
            for i, t in enumerate(TENANTS):
                start = utc_now - dt.timedelta(days=day, hours=10 - i)
                s.add(Allocation(user=f"u{i}", tenant=t, profile="gpu-1", state=ALLOC_RELEASED, request=whole,
                                 allocated_at=start, released_at=start + dt.timedelta(hours=1 + i + day)))
        for k in range(24):
            created = utc_now - dt.timedelta(hours=23 - k, minutes=30)
            s.add(Job(name=f"j{k}", user="u0", tenant="team-a", profile="gpu-1", state=SUCCEEDED, notebook="{}",
                      request=whole, created_at=created, started_at=created + dt.timedelta(minutes=5 + k % 7),
                      finished_at=created + dt.timedelta(minutes=25)))
    db.dispose()


@pytest.fixture(scope="module")
def hub():
    with running_hub(CONFIG, "aistack-dashboard-", "admin_dashboard") as h:
        h.signup("admin")
        assert h.login("admin") is not None, h.log_tail()
        feed_history(f"sqlite:///{os.path.join(h.data_dir, 'aistack.sqlite')}")
        yield h


def test_the_api_proxy_refuses_a_body_over_its_configured_limit_and_forwards_one_under_it(hub):
    r = hub.api("POST", "users/admin/tokens", json={"note": "proxy limit test"})
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"token {r.json()['token']}", "Content-Type": "application/json"}
    proxy = hub.url + "services/aistack/admin/api-proxy/"
    big = json.dumps({"name": "huge", "description": "x" * 5000})
    r = requests.post(proxy + "environments", data=big, headers=headers, timeout=30)
    assert r.status_code == 413, (r.status_code, r.text)
    assert "over the proxy's limit of 4096" in r.json()["message"]
    # under the limit the call reaches the API, which answers for itself (here: the listing)
    r = requests.get(proxy + "environments", headers=headers, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    assert isinstance(r.json()["items"], list), r.text


def test_chartjs_is_served_or_the_page_fails_loudly(hub):
    r = requests.get(hub.url + "services/aistack/admin/static/lib/chart.umd.js", timeout=10)
    assert r.status_code == 200, ("Chart.js is not served: run `jlpm install` and scripts/setup.d/40-labextension.sh "
                                  f"({r.status_code} {r.text[:300]})")
    assert "Chart.js v4" in r.text[:400]


@pytest.mark.browser
def test_dashboard_in_chromium(hub):
    """Charts with real axes (GPU utilisation per GPU, stacked GPU-hours per tenant per day, queue), stable
    tenant colours, dark mode from prefers-color-scheme, and an invalid quota edit that keeps the input."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test` (45-chromium.sh)"
    env = dict(os.environ, HUB_URL=hub.url, PASSWORD=PASSWORD, ARTIFACTS=ARTIFACTS, CHROMIUM=CHROMIUM)
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser", "dashboard.js")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    res = json.loads(lines[-1])
    with open(os.path.join(ARTIFACTS, "browser-results.json"), "w") as f:
        json.dump(res, f, indent=1)
    assert not res.get("error"), f"{res['error']}\nsteps: {res.get('steps')}\n{out.stderr[-2000:]}\n{hub.log_tail(3000)}"

    try:
        light, dark = res["light"], res["dark"]
        assert res["lightStatus"] == 200 and light["state"] == "ready" and light["theme"] == "light"
        util = light["charts"]["util"]
        assert [d["label"] for d in util["datasets"]] == ["test-node/0", "test-node/1"]
        assert all(d["n"] >= 60 for d in util["datasets"]), util["datasets"]
        assert util["scales"]["y"]["title"] == "utilisation (%)" and util["scales"]["y"]["max"] == 100
        assert util["scales"]["x"]["title"] == "time (UTC)" and util["scales"]["x"]["ticks"] >= 4
        hours = light["charts"]["hours"]
        assert [d["label"] for d in hours["datasets"]] == list(TENANTS)
        assert len(hours["labels"]) >= 3 and hours["labels"] == sorted(hours["labels"])
        assert hours["scales"]["y"]["title"] == "GPU-hours" and hours["scales"]["y"]["ticks"] >= 3
        assert hours["scales"]["x"]["ticks"] == len(hours["labels"])  # every day labelled, none clipped
        assert hours["firstBarWidth"] <= 48, hours  # a day is a bar, not a full-width block
        queue = light["charts"]["queue"]
        assert queue["scales"]["wait"]["title"] == "mean wait (min)" and queue["scales"]["y"]["title"] == "jobs waiting"
        # stable colours: a tenant has the same colour in both renderings (they are a hash of its name)
        assert [d["colour"] for d in hours["datasets"]] == [d["colour"] for d in dark["charts"]["hours"]["datasets"]]
        assert len({d["colour"] for d in hours["datasets"]}) == 3
        # dark mode follows the browser's prefers-color-scheme (JupyterHub's darkmode.js + Bootstrap 5)
        assert dark["theme"] == "dark" and dark["bodyBg"] != light["bodyBg"], (light["bodyBg"], dark["bodyBg"])
        assert dark["charts"]["hours"]["scales"]["y"]["tickColor"] != light["charts"]["hours"]["scales"]["y"]["tickColor"]

        # accounting, storage, environments: loaded through the api-proxy without an error shown
        parts = res["partials"]
        assert parts["accError"] == "" and parts["envError"] == "" and parts["stMore"] == "", parts
        assert parts["accCsv"].endswith("/services/aistack/admin/api-proxy/accounting/report?group_by=tenant&format=csv")
        assert parts["stRows"] == len(TENANTS), parts  # every tenant's storage usage, read with the admin's token

        # an invalid quota edit: the page again (400), the input kept and marked, the message next to it
        assert res["invalidStatus"] == 400 and "'lots' is not a number" in res["pageError"], res
        assert "'lots' is not a number" in res["fieldError"] and res["keptValue"] == "lots"
        assert "is-invalid" in res["keptInvalid"] and "is-invalid" not in res["otherFieldClass"]
        assert res["afterInvalidCharts"] == "ready"
        assert "quota of team-a saved" in res["savedNotice"]
        assert hub.service("GET", "tenants/team-a").json()["quotas"]["any"]["gpu_milli"] == 3000
        # the GPU idle policy, in place: refused with the reason and the input kept, then saved
        assert res["policyStatus"] == 400 and "warn_s must be" in res["policyError"] and res["policyKept"] == "45", res
        assert "for 20.0 min are stopped (warned 5.0 min before" in res["policySaved"], res["policySaved"]
        # a budget for a tenant that does not exist: the API's 404 message, the input kept; then team-a's, listed
        assert "no tenant 'no-such-tenant'" in res["budgetRefused"] and res["budgetKept"] == "no-such-tenant", res
        assert "team-a" in res["budgetRow"] and "250" in res["budgetRow"] and res["budgetErrorAfter"] == "", res
        budgets = {b["tenant"]: b for b in hub.service("GET", "accounting/budgets").json()["budgets"]}
        assert budgets["team-a"]["amount"] == 250, budgets
        # a negative price: the API's 400 reason, the input kept; then a future version, listed with its date
        assert "unit_price" in res["priceRefused"] and res["priceKept"] == "-1", res
        assert any(row.startswith("gpu | A100-80GB | 2.75") and res["priceFrom"] in row for row in res["priceRows"]), \
            res["priceRows"]
        for name in ("budget-refused", "accounting-edited"):
            assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 5_000, name
    finally:
        # leave the accounting as the other tests of this hub expect it: no budget, no future price
        # (no assert here: a failure above must be the one reported)
        hub.service("DELETE", "accounting/budgets/team-a")
        for p in hub.service("GET", "accounting/prices?limit=200").json()["prices"]:
            if p["effective_from"] == res.get("priceFrom"):
                hub.service("DELETE", f"accounting/prices/{p['id']}")


def test_api_proxy_scopes_xsrf_and_allow_list(hub):
    """The admin page's api-proxy (aistack_hub/admin/proxy.py), as a browser session with cookies: it forwards
    with the viewer's own token (a member may not read another tenant's report, an admin may, CSV passes
    through), refuses a cookie-authenticated write without X-XSRFToken, and forwards only its allow-list."""
    proxy = hub.url + "services/aistack/admin/api-proxy/"
    admin = hub.login("admin")
    assert "sent to the admin" in hub.signup("carol")
    assert admin.get(hub.url + "hub/authorize/carol").status_code == 200
    carol = hub.login("carol")  # her first login creates her JupyterHub user
    assert carol is not None, hub.log_tail()
    assert hub.api("POST", "groups/team-a").status_code in (201, 409)
    r = hub.api("POST", "groups/team-a/users", json={"users": ["carol"]})
    assert r.status_code == 200, r.text

    # a member's proxied read of another tenant's report: the API's 403 (the viewer's token, not the service's)
    r = carol.get(proxy + "accounting/report", params={"tenant": "team-b"})
    assert r.status_code == 403, (r.status_code, r.text[:500])
    assert "team-b" in r.json()["message"], r.text
    # the admin's: the report, and the CSV with its Content-Type and Content-Disposition
    r = admin.get(proxy + "accounting/report", params={"tenant": "team-b"})
    assert r.status_code == 200 and r.json()["group_by"] == ["tenant"], (r.status_code, r.text[:500])
    assert "rows" in r.json(), r.text[:500]
    r = admin.get(proxy + "accounting/report", params={"tenant": "team-b", "format": "csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), (r.status_code, r.headers)
    assert 'filename="aistack-usage.csv"' in r.headers["Content-Disposition"] and r.text.count("\n") >= 1
    r = carol.get(proxy + "storage/team-a")
    assert r.status_code == 200, (r.status_code, r.text[:500])

    # a write without X-XSRFToken is refused and changes nothing; with the page's token it is forwarded
    budget = {"amount": 100, "thresholds": [0.5, 1.0]}
    r = admin.put(proxy + "accounting/budgets/team-a", json=budget)
    assert r.status_code == 403, (r.status_code, r.text[:500])
    budgets = hub.service("GET", "accounting/budgets").json()
    assert "team-a" not in json.dumps(budgets), budgets
    assert admin.get(hub.url + "services/aistack/admin/").status_code == 200  # the page sets the _xsrf cookie
    xsrf = admin.cookies.get("_xsrf", path="/services/aistack/") or admin.cookies.get("_xsrf")
    assert xsrf, admin.cookies
    r = admin.put(proxy + "accounting/budgets/team-a", json=budget, headers={"X-XSRFToken": xsrf})
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert "team-a" in json.dumps(hub.service("GET", "accounting/budgets").json())
    r = admin.delete(proxy + "accounting/budgets/team-a", headers={"X-XSRFToken": xsrf})
    assert r.status_code in (200, 204), (r.status_code, r.text[:500])
    # a member's write with a valid XSRF token still meets the API's scopes
    carol.get(hub.url + "services/aistack/admin/")  # 403 page for a member, but it sets carol's _xsrf cookie
    cx = carol.cookies.get("_xsrf", path="/services/aistack/") or carol.cookies.get("_xsrf")
    r = carol.put(proxy + "accounting/budgets/team-a", json=budget, headers={"X-XSRFToken": cx or ""})
    assert r.status_code == 403, (r.status_code, r.text[:500])

    # off the allow-list: 404 JSON with a message, for paths the API has (tenants, me) and traversal
    for off in ("tenants", "tenants/team-a", "me", "storage/team-a/extra", "accounting", "storage%2F..%2Ftenants"):
        r = admin.get(proxy + off)
        assert r.status_code == 404, (off, r.status_code, r.text[:300])
        assert "forwards only" in r.json()["message"], (off, r.text[:300])
