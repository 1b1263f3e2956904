"""Priorities by grant through the REST API of a real hub and service: ``high`` and ``emergency`` submissions
without the tenant's grant are 403 with a message; with it (granted by an admin with PATCH tenants) they are
accepted; a tenant's cap on high work holds in admission (the second high job waits with reason
``high_share`` while normal work still starts) and a request over the cap is refused at once.
"""
from __future__ import annotations

import pytest

from .conftest import sleep_notebook, user_token, wait_for


def submit(hub, token, **body):
    return hub.service("POST", "jobs", token, json={"notebook": sleep_notebook(), "profile": "cpu",
                                                    "tenant": "team-b", **body})


def cancel(hub, token, job):
    hub.service("POST", f"jobs/{job['id']}/cancel", token)


@pytest.fixture(scope="module")
def pia(hub):
    return user_token(hub, "pia", ["team-b"])


@pytest.mark.parametrize("priority,field", [("high", "high_users"), ("emergency", "emergency_users")])
def test_priority_needs_the_tenants_grant(hub, pia, priority, field):
    """Closes: priority "high" needs no grant (and emergency: each needs a per-tenant grant)."""
    r = submit(hub, pia, priority=priority)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden" and "grant" in r.json()["message"] and priority in r.json()["message"]
    me = hub.service("GET", "me", pia).json()
    assert [(t["name"], t["high"], t["emergency"]) for t in me["tenants"]] == [("team-b", False, False)]
    # a user may not grant themselves (only platform admins PATCH tenants)
    r = hub.service("PATCH", "tenants/team-b", pia, json={field: ["pia"]})
    assert r.status_code == 403, r.text
    r = hub.service("PATCH", "tenants/team-b", json={field: ["pia"]})  # the admin token
    assert r.status_code == 200 and r.json()[field] == ["pia"], r.text
    try:
        r = submit(hub, pia, priority=priority)
        assert r.status_code == 201, r.text
        assert r.json()["priority"] == priority
        cancel(hub, pia, r.json())
        me = hub.service("GET", "me", pia).json()["tenants"][0]
        assert me["high"] is True and me["emergency"] is (priority == "emergency")
        # the grant is per tenant: pia's grant in team-b is none in team-a (where pia is no member either)
        user_token(hub, "pia", ["team-a"])
        r = submit(hub, pia, priority=priority, tenant="team-a")
        assert r.status_code == 403 and "team-a" in r.json()["message"], r.text
    finally:
        hub.api("DELETE", "groups/team-a/users", json={"users": ["pia"]})
        assert hub.service("PATCH", "tenants/team-b", json={field: []}).status_code == 200
    # revoked: refused again on the next request
    assert submit(hub, pia, priority=priority).status_code == 403


def test_high_work_cap_holds_in_admission(hub, pia):
    """Closes: a tenant's share of high work cannot be capped (the tenant setting, enforced by admission)."""
    r = hub.service("PATCH", "tenants/team-b", json={"high_users": ["pia"], "max_high_share": 0.5})
    assert r.status_code == 200 and r.json()["max_high_share"] == 0.5, r.text
    jobs = []
    try:
        # over the cap on its own (2 of 2 GPUs > 50%): refused at once, with what to do
        r = submit(hub, pia, priority="high", profile="gpu-2")
        assert r.status_code == 403 and r.json()["error"] == "high_share", r.text
        assert "normal priority" in r.json()["message"]
        first = submit(hub, pia, priority="high", profile="gpu-1")
        assert first.status_code == 201, first.text
        jobs.append(first.json())
        wait_for(lambda: hub.service("GET", f"jobs/{first.json()['id']}", pia).json()["state"] in ("admitted", "running"),
                 60, "the first high job to start", hub)
        second = submit(hub, pia, priority="high", profile="gpu-1")
        assert second.status_code == 201, second.text
        jobs.append(second.json())
        normal = submit(hub, pia, profile="gpu-1")
        assert normal.status_code == 201, normal.text
        jobs.append(normal.json())
        # normal work takes the second GPU; the second high job waits for the cap, saying so
        wait_for(lambda: hub.service("GET", f"jobs/{normal.json()['id']}", pia).json()["state"] in ("admitted", "running"),
                 60, "the normal job to start beside the capped high work", hub)
        j = hub.service("GET", f"jobs/{second.json()['id']}", pia).json()
        assert j["state"] == "queued" and j["pending_reason"] == "high_share", j
    finally:
        for j in jobs:
            cancel(hub, pia, j)
        hub.service("PATCH", "tenants/team-b", json={"high_users": [], "max_high_share": None})


def test_bad_cap_is_a_400_with_the_field(hub):
    """Closes: a tenant's share of high work cannot be capped (bad input is a clear 4xx, never 500)."""
    for bad in (2, -1, "half"):
        r = hub.service("PATCH", "tenants/team-b", json={"max_high_share": bad})
        assert r.status_code == 400 and "max_high_share" in r.json()["message"], r.text
    r = hub.service("PATCH", "tenants/team-b", json={"high_users": "pia"})
    assert r.status_code == 400 and "high_users" in r.json()["message"], r.text
