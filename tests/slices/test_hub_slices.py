"""Slices come back on every path, with a real hub (``aistack-hub up``: JupyterHub + proxy + the service).

No GPU here: the configured inventory (two A100-80GB, the first MIG-enabled) stands in for NVML; the slices
are real allocations of the real scheduler. The service's own periodic reconciliation is off in this hub
(``AIStackService.reconcile_interval_s: 0``), so the first tests prove the spawner's paths alone; the hub
restart test then proves the reconciliation ``aistack-hub up`` runs at start.

``JupyterHub.api_page_max_limit`` is 2 here: the hub pages its user list at 2 instead of 200, so three
running servers span two pages exactly as 201 running servers do at the default (the bug was the same: one
page read, the servers of the others forgotten and their GPUs freed). 205 users exist (created through the
hub's API), the running servers belong to the last ones created.
"""
from __future__ import annotations

import copy
import os
import shutil
import signal
import tempfile
import time

import psutil
import pytest
import requests

from tests.hub.conftest import TEST_CONFIG
from tests.hub.launcher import REPO, HubStartError, start_hub, stop_hub

CONFIG = copy.deepcopy(TEST_CONFIG)
CONFIG["JupyterHub"].update({
    "cleanup_servers": False,  # servers outlive a hub restart
    "api_page_max_limit": 2, "api_page_default_limit": 2,
    "load_groups": {},
})
CONFIG["Spawner"] = {
    "poll_interval": 1,  # the hub polls each server every second (JupyterHub's default: 30 s)
    # a broken server command for the members of team-broken: their spawn fails after the slice is allocated
    "group_overrides": {"broken": {"groups": ["team-broken"],
                                   "spawner_override": {"cmd": ["/nonexistent/jupyterhub-singleuser"]}}},
}
CONFIG["GPUSliceSpawnerMixin"] = {"allocation_poll_interval": 0.3, "idle_check_interval": 0}
CONFIG["AIStackService"] = {"reconcile_interval_s": 0}
CONFIG["tenants"] = CONFIG["tenants"] + [{"name": "team-broken", "quotas": {}}]
MANY = [f"u{i:03d}" for i in range(205)]
RUNNERS = MANY[-3:]  # the last users created run servers (ids beyond page 1 at any page size)

state: dict = {}


@pytest.fixture(scope="module")
def hub():
    tmp = tempfile.mkdtemp(prefix="aistack-slices-")
    os.chmod(tmp, 0o711)  # the notebook servers' account must reach its home below
    try:
        h = start_hub(CONFIG, tmp)
    except HubStartError as e:
        pytest.fail(str(e), pytrace=False)
    holder = {"hub": h, "tmp": tmp}
    try:
        yield holder
    finally:
        h = holder["hub"]
        pids = server_pids(h)
        stop_hub(h)
        # cleanup_servers is off: the servers outlive the hub by design; stop them here (bounded wait)
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, psutil.Error):
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for p in alive:
            p.kill()
        artifacts = os.path.join(REPO, "test-artifacts", "slices")
        os.makedirs(artifacts, exist_ok=True)
        for name in ("hub.log", "hub2.log"):
            if os.path.exists(os.path.join(tmp, name)):
                shutil.copy(os.path.join(tmp, name), os.path.join(artifacts, name))
        shutil.rmtree(tmp, ignore_errors=True)


def server_pids(h) -> list[int]:
    """The pids of every running server, from the hub's spawner state (the admin token may read it)."""
    pids = []
    try:
        offset = 0
        while True:
            r = h.api("GET", f"users?state=active&offset={offset}",
                      headers={"Accept": "application/jupyterhub-pagination+json"})
            data = r.json()
            for u in data["items"]:
                for srv in (u.get("servers") or {}).values():
                    pid = (srv.get("state") or {}).get("pid")
                    if pid:
                        pids.append(pid)
            nxt = data["_pagination"]["next"]
            if not nxt:
                return pids
            offset = nxt["offset"]
    except (requests.RequestException, KeyError, ValueError):
        return pids


def wait_for(what: str, cond, timeout: float, h=None):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n" + (h.log_tail() if h else ""))
        time.sleep(0.3)


def allocations(h, user: str | None = None) -> list[dict]:
    r = h.service("GET", "allocations")
    assert r.status_code == 200, r.text
    return [a for a in r.json()["allocations"] if user is None or a["user"] == user]


def spawn(h, user, server, tenant, profile):
    return h.api("POST", f"users/{user}/servers/{server}", json={"tenant": tenant, "profile": profile})


def server_of(h, user, server):
    return (h.api("GET", f"users/{user}").json().get("servers") or {}).get(server)


def test_setup_users_and_tenants(hub):
    h = hub["hub"]
    r = h.api("POST", "users", json={"usernames": ["alice", "bob", "carol", "dave", *MANY]})
    assert r.status_code == 201, r.text
    for group, users in (("team-a", ["alice"]), ("team-d", ["bob", "carol", *RUNNERS]), ("team-broken", ["dave"])):
        r = h.api("POST", f"groups/{group}/users", json={"users": users})
        assert r.status_code == 200, r.text
    tokens = {}
    for name in ("alice", "carol"):
        r = h.api("POST", f"users/{name}/tokens", json={"note": "slices test"})
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    state["tokens"] = tokens
    total = h.api("GET", "users?limit=1", headers={"Accept": "application/jupyterhub-pagination+json"})
    assert total.json()["_pagination"]["total"] > 200


def test_a_server_shut_down_from_inside_frees_its_slice(hub):
    """Closes: a server that ends by itself (File > Shut Down) kept its slice and quota."""
    h, token = hub["hub"], state["tokens"]["alice"]
    r = spawn(h, "alice", "s1", "team-a", "quarter")
    assert r.status_code in (201, 202), r.text
    srv = h.wait_ready("alice", "s1", h.admin_token)
    [alloc] = allocations(h, "alice")
    assert alloc["state"] == "allocated"
    # File > Shut Down in JupyterLab is this request: the server process exits by itself
    r = requests.post(h.url.rstrip("/") + srv["url"] + "api/shutdown", headers={"Authorization": f"token {token}"},
                      timeout=30)
    assert r.status_code in (200, 204), r.text
    wait_for("alice's slice to be released", lambda: not allocations(h, "alice"), 30, h)
    got = h.service("GET", f"allocations/{alloc['id']}").json()
    assert got["state"] == "released" and got["release_reason"] is None, got  # the spawner released it
    wait_for("the hub to record the server as stopped", lambda: not server_of(h, "alice", "s1"), 30, h)
    # the quota is free again: the same user gets the same slice at once
    assert spawn(h, "alice", "s2", "team-a", "quarter").status_code in (201, 202)
    h.wait_ready("alice", "s2", h.admin_token)
    assert h.api("DELETE", "users/alice/servers/s2").status_code in (202, 204)
    wait_for("alice's second slice to be released", lambda: not allocations(h, "alice"), 30, h)


def test_cancelled_spawns_waiting_in_line_free_their_places(hub):
    """Closes: a cancelled pending spawn kept its slice (two cancels: two slices held, no server, refused)."""
    h = hub["hub"]
    assert spawn(h, "bob", "g", "team-d", "gpu-1").status_code in (201, 202)  # the one whole GPU
    h.wait_ready("bob", "g", h.admin_token)
    for name in ("w1", "w2"):
        r = spawn(h, "carol", name, "team-d", "gpu-1")
        assert r.status_code == 202, r.text
        wait_for(f"carol's {name} to wait in line",
                 lambda: [a for a in allocations(h, "carol") if a["server_name"] == name and a["state"] == "pending"],
                 30, h)
        r = h.api("DELETE", f"users/carol/servers/{name}")  # cancel the pending spawn
        assert r.status_code in (202, 204), r.text
        wait_for(f"carol's cancelled {name} to give its place back",
                 lambda: not [a for a in allocations(h, "carol") if a["server_name"] == name], 30, h)
    # cancelled at once, while the service may still be holding its answer to POST allocations (the
    # spawner does not know the id yet): the answer is awaited and the slice given back
    r = spawn(h, "carol", "w3", "team-d", "gpu-1")
    assert r.status_code == 202, r.text
    r = h.api("DELETE", "users/carol/servers/w3")
    assert r.status_code in (202, 204), r.text
    wait_for("carol's w3 spawn to end", lambda: not server_of(h, "carol", "w3"), 30, h)
    wait_for("carol's at-once cancelled w3 to give its place back",
             lambda: not [a for a in allocations(h, "carol") if a["server_name"] == "w3"], 30, h)
    assert allocations(h, "carol") == []
    # and carol is not refused a server afterwards
    assert spawn(h, "carol", "c", "team-d", "cpu").status_code in (201, 202)
    h.wait_ready("carol", "c", h.admin_token)
    for user, name in (("bob", "g"), ("carol", "c")):
        assert h.api("DELETE", f"users/{user}/servers/{name}").status_code in (202, 204)
    wait_for("bob's and carol's slices released", lambda: not allocations(h, "bob") + allocations(h, "carol"), 30, h)


def test_a_spawn_failing_after_its_slice_was_allocated_frees_it(hub):
    """Closes: a failing spawn kept its slice (the hub calls stop() only for a running server)."""
    h = hub["hub"]
    r = spawn(h, "dave", "x", "team-broken", "half")
    assert r.status_code in (201, 202, 500), r.text
    # the command fails to run (at once, or in the sandbox's wrapper, which then exits): the hub gives up
    # after its http_timeout (60 s, aistack's default) at the latest, and the slice goes back
    wait_for("dave's failed spawn to end", lambda: not server_of(h, "dave", "x"), 150, h)
    wait_for("dave's slice to be released", lambda: not allocations(h, "dave"), 30, h)
    assert "/nonexistent/jupyterhub-singleuser" in h.log_tail(400000)  # it failed where we made it fail


def test_metrics_and_health_need_a_token_and_show_other_tenants_only_with_the_scope(hub):
    """Closes: /metrics and /health were readable without a token and showed other tenants' names."""
    h = hub["hub"]
    base = h.url + "services/aistack/"
    for path in ("metrics", "health"):
        assert requests.get(base + path, timeout=10).status_code == 401
        assert requests.get(base + path, headers={"Authorization": "token nope"}, timeout=10).status_code == 403
    alice = {"Authorization": f"token {state['tokens']['alice']}"}
    assert requests.get(base + "health", headers=alice, timeout=10).json()["ok"] is True
    full = requests.get(base + "metrics", headers={"Authorization": f"token {h.admin_token}"}, timeout=10)
    assert full.status_code == 200 and 'tenant="team-d"' in full.text and 'tenant="team-a"' in full.text
    own = requests.get(base + "metrics", headers=alice, timeout=10)
    assert own.status_code == 200 and 'tenant="team-a"' in own.text
    assert 'tenant="team-d"' not in own.text and 'tenant="team-b"' not in own.text
    assert "aistack_scheduler_tick_seconds_count" in own.text  # series without a tenant stay


def test_a_hub_restart_with_servers_beyond_the_first_page_keeps_their_slices(hub):
    """Closes: hub restart reconciliation read one page of users (JupyterHub pages at 200) and freed the
    slices of running servers beyond it (GPUs double-booked)."""
    h = hub["hub"]
    for user in RUNNERS:
        assert spawn(h, user, "r", "team-d", "cpu").status_code in (201, 202)
    for user in RUNNERS:
        h.wait_ready(user, "r", h.admin_token, timeout=120)
    before = {a["user"]: a for a in allocations(h) if a["user"] in RUNNERS}
    assert set(before) == set(RUNNERS) and all(a["state"] == "allocated" for a in before.values())
    # and one server whose slice nothing holds any more: its allocation outlived it (as after a crash of
    # the hub between the server's end and its release): the reconciliation must free this one only
    r = h.service("POST", "allocations", json={"user": "carol", "tenant": "team-d", "profile": "cpu",
                                               "server_name": "ghost", "wait": 5})
    assert r.status_code == 201 and r.json()["state"] == "allocated", r.text
    ghost = r.json()["id"]
    pids = server_pids(h)
    assert len(pids) == len(RUNNERS)

    stop_hub(h)  # cleanup_servers is off: the servers go on running
    assert all(psutil.pid_exists(p) for p in pids)
    try:
        h2 = start_hub(CONFIG, hub["tmp"], log_name="hub2.log")
    except HubStartError as e:
        pytest.fail(str(e), pytrace=False)
    hub["hub"] = h2
    # aistack-hub up reconciles right after the hub comes up (POST allocations/reconcile)
    wait_for("the ghost allocation to be released",
             lambda: h2.service("GET", f"allocations/{ghost}").json()["state"] == "released", 60, h2)
    after = {a["user"]: a for a in allocations(h2) if a["user"] in RUNNERS}
    assert {u: a["id"] for u, a in after.items()} == {u: a["id"] for u, a in before.items()}, (before, after)
    assert all(a["state"] == "allocated" for a in after.values())
    released = h2.service("GET", "allocations/released").json()["released"]
    assert [x["id"] for x in released if "reconciliation" in (x["reason"] or "")] == [ghost], released
    for user in RUNNERS:
        assert (server_of(h2, user, "r") or {}).get("ready"), f"{user}'s server is not running after the restart"
