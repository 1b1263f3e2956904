"""The home and spawn pages' hints (``aistack_hub.admin.hubside.HomeHints``) over several tenants. The user
is a plain stand-in with the attributes the hub's ``User`` has (groups, spawners); the real hub renders
them in test_onboarding_browser.py.
"""
from __future__ import annotations

from types import SimpleNamespace as NS

from aistack_hub.admin.hubside import HomeHints, TenantDirectory
from job_runner.scheduling import Quota, Tenant


def hints(user):
    tenants = [Tenant("team-a", {"any": Quota(max_servers_per_user=1)}, admins={"carol"}),
               Tenant("team-b", {"any": Quota(max_servers_per_user=2)}), Tenant("team-c", {})]
    return HomeHints(TenantDirectory(tenants, "http://127.0.0.1:9/api/", "t"), {"admin"})(user)


def user(groups, running=()):
    spawners = {f"s{i}": NS(active=True, tenant=t) for i, t in enumerate(running)}
    return NS(name="u", admin=False, groups=[NS(name=g) for g in groups], spawners=spawners)


def test_no_tenant_says_whom_to_ask():
    """Closes: a user in no tenant sees an active Start button that can only fail."""
    h = hints(user(["not-a-tenant"]))  # a JupyterHub group that is no tenant does not count
    assert h["no_tenant"] and not h["can_start"]
    assert "no tenant" in h["message"] and "admin, carol" in h["message"]


def test_limits_per_tenant_and_when_start_is_blocked():
    """Closes: server-limit messages contradict each other and the limit shows only after Start."""
    h = hints(user(["team-a", "team-b"], running=["team-a"]))
    assert [(t["tenant"], t["limit"], t["running"], t["full"]) for t in h["tenants"]] == [
        ("team-a", 1, 1, True), ("team-b", 2, 0, False)]
    assert h["can_start"] and h["message"] == ""  # team-b still has room
    h = hints(user(["team-a", "team-b"], running=["team-a", "team-b", "team-b"]))
    assert not h["can_start"] and "team-a: 1 of 1; team-b: 2 of 2" in h["message"] and "Stop one" in h["message"]
    h = hints(user(["team-c"], running=["team-c"] * 5))
    assert h["can_start"] and h["tenants"][0]["limit"] is None  # no limit: never blocked


def test_no_user_no_hints():
    """Closes: a user in no tenant sees an active Start button (pages without a user render as before)."""
    assert hints(None) == {}
