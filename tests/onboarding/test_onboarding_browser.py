"""Onboarding without dead ends, in a real browser: Debian's Chromium driven by playwright-core
(browser/onboarding.js) against the real hub of conftest.py. Screenshots: test-artifacts/onboarding/*.png.

Closes (each checked below, in the order the script walks through them):
- an approved user cannot be added to a tenant until they have logged in once: added before their first
  login, they then start a server;
- ``/hub/authorize`` is linked nowhere and nothing tells an admin someone waits: the admin page lists the
  pending sign-ups with the link;
- tenants cannot be created in any UI, and a JupyterHub group is silently not a tenant: created, renamed,
  deleted from the admin page; a group made in JupyterHub is listed as "not a tenant" and made one;
- no control makes someone a tenant admin: made one from the members row;
- a user in no tenant sees a Start button that can only fail: guidance instead, on home and spawn pages;
- server-limit messages contradict each other and the limit is refused only after Start: the limits are
  shown before Start, and at the limit Start is replaced by what to do.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.hub.launcher import REPO

from .conftest import ARTIFACTS

CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.browser
def test_onboarding_in_chromium(hub):
    """Closes: the onboarding dead ends (sign up -> approve -> add to a tenant -> spawn without logging in
    first; tenants in the UI; tenant admins; pending sign-ups; no-tenant guidance; limits before Start)."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test` (45-chromium.sh)"
    assert os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")), \
        "playwright-core is missing: run `bash scripts/setup.sh test`"
    # a group made in JupyterHub's own admin page (here: its API), with a member, is not a tenant yet
    assert hub.api("POST", "groups/made-in-hub").status_code == 201
    assert hub.api("POST", "users/erin").status_code == 201
    assert hub.api("POST", "groups/made-in-hub/users", json={"users": ["erin"]}).status_code == 200
    env = dict(os.environ, HUB_URL=hub.url, PASSWORD=hub.password, ARTIFACTS=ARTIFACTS, CHROMIUM=CHROMIUM)
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser", "onboarding.js")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    res = json.loads(lines[-1])
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "browser-results.json"), "w") as f:
        json.dump(res, f, indent=1)
    assert not res.get("error"), f"{res['error']}\nsteps done: {res.get('steps')}\n{out.stderr[-3000:]}\n{hub.log_tail(4000)}"

    # pending sign-ups are on the admin page, with the link to approve them
    assert "sent to the admin" in res["signupMessage"], res["signupMessage"]
    assert "2 sign-up(s) wait" in res["hubBanner"] and "newbie, loner" in res["hubBanner"], res["hubBanner"]
    assert res["hubBannerLink"] == "/hub/authorize", res
    assert set(res["pendingNames"]) == {"newbie", "loner"} and "2 sign-up(s) wait" in res["pendingText"], res
    assert res["authorizeHref"] == "/hub/authorize" and res["authorizeUrl"].endswith("/hub/authorize"), res
    assert "No sign-up waits" in res["pendingAfter"], res["pendingAfter"]
    assert set(res["withoutTenant"]) == {"newbie", "loner", "erin"}, res["withoutTenant"]  # not the admin

    # added before the first login: the JupyterHub user was created, then put in the group
    assert "newbie added to team-a" in res["addNotice"] and "created" in res["addNotice"], res["addNotice"]
    assert res["adminButtonBefore"] == "make tenant admin"
    assert "tenant admin" in res["newbieRoles"], res["newbieRoles"]
    tenant = hub.service("GET", "tenants/team-a").json()
    assert tenant["admins"] == ["newbie"], tenant

    # tenants created, renamed, deleted; a hub group made a tenant with its members
    assert "tenant team-new created" in res["createNotice"] and res["createdShown"] == 1, res
    assert "renamed to team-renamed" in res["renameNotice"] and res["renamedShown"] == 1 and res["oldNameShown"] == 0
    assert "deleted" in res["deleteNotice"] and res["deletedShown"] == 0, res
    names = {t["name"] for t in hub.service("GET", "tenants").json()["tenants"]}
    assert names == {"team-a", "team-b", "made-in-hub"}, names
    groups = {g["name"] for g in hub.api("GET", "groups").json()}
    assert "team-new" not in groups and "team-renamed" not in groups, groups
    assert "not a tenant" in res["notTenantRow"] and res["madeTenantShown"] == 1, res
    assert res["madeTenantMembers"] == ["made-in-hub:erin"], res["madeTenantMembers"]

    # a user in no tenant: told what to do and whom to ask, and no Start anywhere
    assert "no tenant" in res["lonerHome"] and "admin" in res["lonerHome"], res["lonerHome"]
    assert res["lonerStartButtons"] == 0 and res["lonerSpawnSubmit"] == 0, res
    assert "no tenant" in res["lonerSpawn"], res["lonerSpawn"]

    # the newcomer: limits before Start (the hub's named-server limit and the tenant's), a server started
    assert "up to 2 named server(s)" in res["newbieLimits"], res["newbieLimits"]
    assert "team-a: up to 1 server(s) per user at once; you run 0" in res["newbieLimits"], res["newbieLimits"]
    assert res["newbieStartButtons"] == 1
    assert "allows each user 1 server(s) at once; you have 0" in res["formLimit"], res["formLimit"]
    user = hub.api("GET", "users/newbie").json()
    assert user["servers"][""]["ready"], user
    # at the limit: what to do instead of a Start that would fail
    assert "team-a: 1 of 1" in res["limitReached"] and "Stop one" in res["limitReached"], res["limitReached"]
    assert res["addServerDisabled"] is True
    assert "1 of 1" in res["secondSpawn"], res["secondSpawn"]
    assert hub.api("DELETE", "users/newbie/server").status_code in (202, 204)
