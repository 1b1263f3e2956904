"""End to end: a real JupyterHub + configurable-http-proxy + the aistack service, started by `aistack-hub up`.

No GPU on this machine: the test config's inventory (2 × A100-80GB) stands in for NVML, so the slices are
real allocations of the real scheduler and the pinning is checked in the real server processes, but no
CUDA code runs. The steps share one hub and run in file order.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import time

import nbformat
import pytest

from job_runner.binding.accounts import Isolation

from .conftest import TEST_CONFIG, dump
from .launcher import start_hub, stop_hub
from .kernel import run_code

ENV_CODE = ("import os, json; print(json.dumps(dict({k: os.environ.get(k) for k in ['CUDA_VISIBLE_DEVICES', "
            "'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE', 'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT', 'AISTACK_TENANT', "
            "'AISTACK_PROFILE', 'AISTACK_ALLOCATION_ID', 'HOME', 'USER']}, uid=os.getuid())))")

state: dict = {}


def server_env(hub, user, server) -> dict:
    token = state["tokens"][user]
    srv = hub.wait_ready(user, server, token)
    out = run_code(hub.url.rstrip("/") + srv["url"], token, ENV_CODE)
    return json.loads(out.strip().splitlines()[-1])


def spawn(hub, user, server, tenant, profile):
    return hub.api("POST", f"users/{user}/servers/{server}", state["tokens"][user],
                   json={"tenant": tenant, "profile": profile})


def usage(hub) -> dict:
    r = hub.service("GET", "usage")
    assert r.status_code == 200, r.text
    return r.json()


def test_signup_needs_admin_approval(hub):
    assert "sent to the admin" in hub.signup("alice")
    hub.signup("bob")
    hub.signup("carol")
    assert hub.login("alice") is None, "an unapproved user must not be able to log in"
    admin_page = hub.signup("admin")
    assert "successful" in admin_page, "the configured admin is approved on sign-up"
    admin = hub.login("admin")
    assert admin is not None
    for name in ("alice", "bob", "carol"):
        r = admin.get(hub.url + f"hub/authorize/{name}")
        assert r.status_code == 200, r.text[:500]
    sessions = {name: hub.login(name) for name in ("alice", "bob", "carol")}
    assert all(sessions.values()), f"approved users log in: {sessions}"
    state["sessions"] = {"admin": admin, **sessions}
    # nav bar: admins see the GPU admin link, plain users do not
    assert "aistack-admin-link" in admin.get(hub.url + "hub/home").text
    assert "aistack-admin-link" not in sessions["alice"].get(hub.url + "hub/home").text


def test_tokens_and_tenants(hub):
    # `aistack-hub token USER`, like `jupyterhub token`
    out = subprocess.run([sys.executable, "-m", "aistack_hub.app", "token", "alice", "--data-dir", hub.data_dir],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    alice_token = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{32,}", alice_token), out.stdout
    tokens = {"alice": alice_token}
    for name in ("bob", "carol"):
        r = hub.api("POST", f"users/{name}/tokens", json={"note": "test"})  # the AISTACK_ADMIN_TOKEN
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    state["tokens"] = tokens
    assert hub.api("GET", "users/alice", alice_token).json()["name"] == "alice"
    # tenants are JupyterHub groups
    for group, users in (("team-a", ["alice", "bob"]), ("team-b", ["bob", "carol"])):
        r = hub.api("POST", f"groups/{group}/users", json={"users": users})
        assert r.status_code == 200, r.text
    # quota set through the service API by the admin token: team-a may use 1 GPU, 3 servers per user
    r = hub.service("PATCH", "tenants/team-a", json={"quotas": {"any": {"gpu_milli": 1000, "max_servers_per_user": 3}}})
    assert r.status_code == 200, r.text
    groups = hub.api("GET", "users/bob").json()["groups"]
    assert sorted(groups) == ["team-a", "team-b"], groups


def test_service_knows_the_users_tenants(hub):
    # the contract's GET me (the lab extension's dialog uses it too)
    r = hub.service("GET", "me", state["tokens"]["bob"])
    assert r.status_code == 200, f"GET me: {r.status_code} {r.text}"
    me = r.json()
    assert sorted(t["name"] for t in me["tenants"]) == ["team-a", "team-b"], dump(me)
    assert [t["admin"] for t in sorted(me["tenants"], key=lambda t: t["name"])] == [False, True], dump(me)


def test_profile_form_lists_the_users_tenants(hub):
    bob = state["sessions"]["bob"]
    page = bob.get(hub.url + "hub/spawn/bob/formcheck").text
    assert 'data-tenant="team-a"' in page and 'data-tenant="team-b"' in page, page[-3000:]
    assert 'value="team-a/quarter"' in page and "free now" in page and "quota left" in page
    alice = state["sessions"]["alice"]
    page = alice.get(hub.url + "hub/spawn/alice/formcheck").text
    assert 'data-tenant="team-b"' not in page, "alice is not in team-b"


def test_spawn_servers_with_different_profiles(hub):
    r = spawn(hub, "alice", "s1", "team-a", "quarter")
    assert r.status_code in (201, 202), r.text
    env1 = server_env(hub, "alice", "s1")
    # the account: as root, the user's own (docs/security.md; tests/isolation goes further)
    iso = Isolation()
    expected = pwd.getpwnam(iso.account_name("alice")).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert int(env1["uid"]) == expected, env1
    assert env1["AISTACK_TENANT"] == "team-a" and env1["AISTACK_PROFILE"] == "quarter"
    assert env1["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    assert env1["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert env1["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=12288M"
    assert env1["HOME"] == iso.home("alice")

    r = spawn(hub, "alice", "s2", "team-a", "half")
    assert r.status_code in (201, 202), r.text
    env2 = server_env(hub, "alice", "s2")
    assert env2["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env2["AISTACK_ALLOCATION_ID"] != env1["AISTACK_ALLOCATION_ID"]

    r = spawn(hub, "bob", "cpu", "team-b", "cpu")
    assert r.status_code in (201, 202), r.text
    env3 = server_env(hub, "bob", "cpu")
    assert env3["CUDA_VISIBLE_DEVICES"] == "", "a CPU-only slice must hide every GPU"
    assert env3["AISTACK_TENANT"] == "team-b"
    state["alloc_s2"] = env2["AISTACK_ALLOCATION_ID"]

    u = usage(hub)
    assert u["tenants"]["team-a"]["gpu_milli"] == 750, dump(u)
    assert u["tenants"]["team-a"]["servers"] == 2
    assert u["users"]["alice"]["team-a"]["servers"] == 2


def test_over_quota_is_refused_with_what_is_in_use(hub):
    # team-a has 1 GPU of quota and 0.75 in use: bob's whole GPU charged to team-a must be refused
    r = spawn(hub, "bob", "big", "team-a", "gpu-1")
    assert r.status_code == 403, f"{r.status_code} {r.text}"
    message = r.json()["message"]
    assert "team-a" in message and "quota" in message.lower(), message
    assert re.search(r"750|0\.75", message), f"the message says what is in use: {message}"
    srv = hub.api("GET", "users/bob").json()["servers"]
    assert "big" not in srv or not srv["big"].get("ready"), dump(srv)
    assert usage(hub)["tenants"]["team-a"]["gpu_milli"] == 750, "nothing is charged for a refused server"


def test_job_through_the_rest_api(hub):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os\nprint('square', n * n, 'tenant', os.environ.get('AISTACK_TENANT'))"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    token = state["tokens"]["alice"]
    r = hub.service("POST", "jobs", token, json={"notebook": json.loads(nbformat.writes(nb)), "profile": "cpu",
                                                 "tenant": "team-a", "name": "square", "parameters": {"n": 7}})
    assert r.status_code == 201, r.text
    job = r.json()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        job = hub.service("GET", f"jobs/{job['id']}", token).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert job["state"] == "succeeded", dump(job)
    out = hub.service("GET", f"jobs/{job['id']}/output", token)
    assert out.status_code == 200, out.text
    text = out.text
    assert "square 49" in text, text[-2000:]
    # another user does not see alice's job
    assert hub.service("GET", f"jobs/{job['id']}", state["tokens"]["carol"]).status_code in (403, 404)


def test_admin_page_numbers_and_refusal(hub):
    admin = state["sessions"]["admin"]
    r = admin.get(hub.url + "services/aistack/admin/")
    assert r.status_code == 200, r.text[:2000]
    page = r.text
    assert 'id="viewer">admin<' in page

    def cell(key):
        m = re.search(r'data-usage="%s">\s*([^<]*)<' % re.escape(key), page)
        return m and m.group(1).strip()

    assert cell("team-a:servers") == "2", page[:4000]
    assert cell("team-a:gpu_milli") == "0.75"
    assert cell("team-b:servers") == "1"
    assert re.search(r'data-user-usage="alice:team-a:gpu_milli">\s*0\.75<', page)
    assert 'data-member="team-a:alice"' in page and 'data-member="team-b:carol"' in page
    assert "configured inventory stands in" in page
    assert 'data-gpu="test-node:0"' in page and 'data-gpu="test-node:1"' in page
    assert "<svg" in page and "GPU-hours" in page

    # bob administers team-b only: his view shows team-b, not team-a
    r = state["sessions"]["bob"].get(hub.url + "services/aistack/admin/")
    assert r.status_code == 200, r.text[:2000]
    assert 'data-usage="team-b:servers"' in r.text and 'data-usage="team-a:servers"' not in r.text

    # a plain user is refused
    r = state["sessions"]["alice"].get(hub.url + "services/aistack/admin/")
    assert r.status_code == 403, r.text[:1000]
    assert "neither" in r.text

    # edit in place: the admin lowers team-b's GPU quota on the page
    xsrf = admin.cookies.get("_xsrf", path="/services/aistack/") or admin.cookies.get("_xsrf")
    r = admin.post(hub.url + "services/aistack/admin/tenants/team-b/quota",
                   data={"_xsrf": xsrf, "resource_group": "any", "gpus": "0.25", "cpus": "", "memory_gib": "",
                         "max_servers_per_user": "2", "max_running_jobs": "", "max_queued_jobs": "",
                         "idle_timeout_min": "", "weight": "1"})
    assert r.status_code == 200, r.text[:2000]
    t = hub.service("GET", "tenants/team-b").json()
    assert t["quotas"]["any"]["gpu_milli"] == 250 and t["quotas"]["any"]["max_servers_per_user"] == 2, dump(t)
    # and a tenant admin cannot change quotas
    xsrf_b = state["sessions"]["bob"].cookies.get("_xsrf", path="/services/aistack/") or \
        state["sessions"]["bob"].cookies.get("_xsrf")
    r = state["sessions"]["bob"].post(hub.url + "services/aistack/admin/tenants/team-b/quota",
                                      data={"_xsrf": xsrf_b, "resource_group": "any", "gpus": "8"})
    assert r.status_code == 403, r.text[:1000]

    # a tenant admin manages members of their tenant (JupyterHub groups) ...
    r = state["sessions"]["bob"].post(hub.url + "services/aistack/admin/tenants/team-b/members",
                                      data={"_xsrf": xsrf_b, "action": "add", "user": "alice"})
    assert r.status_code == 200, r.text[:1000]
    assert "team-b" in hub.api("GET", "users/alice").json()["groups"]
    r = state["sessions"]["bob"].post(hub.url + "services/aistack/admin/tenants/team-b/members",
                                      data={"_xsrf": xsrf_b, "action": "remove", "user": "alice"})
    assert "team-b" not in hub.api("GET", "users/alice").json()["groups"]
    # ... but not of another tenant; someone who never logged in is added too (their hub user is created)
    r = state["sessions"]["bob"].post(hub.url + "services/aistack/admin/tenants/team-c/members",
                                      data={"_xsrf": xsrf_b, "action": "add", "user": "bob"})
    assert r.status_code == 403, r.text[:1000]
    r = admin.post(hub.url + "services/aistack/admin/tenants/team-b/members",
                   data={"_xsrf": xsrf, "action": "add", "user": "nobody-here"})
    assert r.status_code == 200 and "team-b" in hub.api("GET", "users/nobody-here").json()["groups"], r.text[:1000]
    assert hub.api("DELETE", "users/nobody-here").status_code == 204
    # the admin grants emergency priority
    r = admin.post(hub.url + "services/aistack/admin/tenants/team-b/grants",
                   data={"_xsrf": xsrf, "user": "carol", "grant": "emergency", "value": "1"})
    assert r.status_code == 200, r.text[:1000]
    assert "carol" in hub.service("GET", "tenants/team-b").json()["emergency_users"]

    # a tenant admin named later (through the API here) gets the "GPU admin" link in the hub's nav bar
    r = hub.service("PATCH", "tenants/team-a", json={"admins": ["alice"]})
    assert r.status_code == 200, r.text
    alice = state["sessions"]["alice"]
    deadline = time.monotonic() + 45  # the hub refreshes its list of tenant admins every 30 s
    while "aistack-admin-link" not in alice.get(hub.url + "hub/home").text and time.monotonic() < deadline:
        time.sleep(2)
    assert "aistack-admin-link" in alice.get(hub.url + "hub/home").text
    assert alice.get(hub.url + "services/aistack/admin/").status_code == 200


def test_stop_frees_the_slice(hub):
    before = usage(hub)["tenants"]["team-a"]["gpu_milli"]
    r = hub.api("DELETE", f"users/alice/servers/s2", state["tokens"]["alice"])
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if usage(hub)["tenants"]["team-a"]["gpu_milli"] == before - 500:
            break
        time.sleep(0.3)
    assert usage(hub)["tenants"]["team-a"]["gpu_milli"] == 250
    r = hub.service("GET", f"allocations/{state['alloc_s2']}")
    assert r.status_code == 404 or r.json().get("state") in ("released", "freed"), r.text
    # the freed half GPU is offered again: team-a has 0.75 GPU of quota left, so "half" fits, "gpu-1" not
    r = hub.service("GET", "profiles", state["tokens"]["alice"], params={"tenant": "team-a"})
    assert r.status_code == 200, r.text
    fits = {p["slug"]: p["fits_quota"] for p in r.json()["profiles"]}
    assert fits["half"] and not fits["gpu-1"], dump(r.json())


def test_idle_server_is_warned_then_stopped(hub):
    # team-c stops servers idle for 20 s; the warning shows on the hub's pages before that
    r = spawn(hub, "carol", "idle", "team-c", "quarter")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("carol", "idle", state["tokens"]["carol"])
    assert usage(hub)["tenants"]["team-c"]["servers"] == 1
    # the tenant's cap on servers per user
    r = hub.service("PATCH", "tenants/team-c", json={"quotas": {"any": {"gpu_milli": 500, "max_servers_per_user": 1}}})
    assert r.status_code == 200, r.text
    r = spawn(hub, "carol", "second", "team-c", "cpu")
    assert r.status_code in (403, 409), f"{r.status_code} {r.text}"
    assert "1 server" in r.json()["message"], r.text
    carol = state["sessions"]["carol"]
    warned = stopped = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopped:
        if "aistack-idle-warning" in carol.get(hub.url + "hub/home").text:
            warned = True
        srv = hub.api("GET", "users/carol").json()["servers"]
        stopped = "idle" not in srv
        time.sleep(1)
    assert warned, "the user was warned before the idle stop"
    assert stopped, f"the idle server was not stopped:\n{hub.log_tail()}"
    assert usage(hub)["tenants"].get("team-c", {}).get("servers", 0) == 0, "the idle server's slice is released"
    # the user can start it again
    r = spawn(hub, "carol", "idle", "team-c", "cpu")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("carol", "idle", state["tokens"]["carol"])


def test_wait_in_line_for_a_gpu(hub):
    # Empty the pool. Its GPU 0 is MIG-enabled, so only GPU 1 can be given whole: a second whole GPU
    # waits in line (the spawn page shows its position) until the first is stopped.
    for user, server in (("alice", "s1"), ("bob", "cpu"), ("carol", "idle")):
        r = hub.api("DELETE", f"users/{user}/servers/{server}", state["tokens"][user])
        assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(v.get("gpu_milli") for v in usage(hub)["tenants"].values()):
        time.sleep(0.5)
    r = spawn(hub, "carol", "w1", "team-d", "gpu-1")
    assert r.status_code in (201, 202), r.text
    env1 = server_env(hub, "carol", "w1")
    assert env1["CUDA_VISIBLE_DEVICES"] == "1", env1
    r = spawn(hub, "carol", "w2", "team-d", "gpu-1")
    assert r.status_code == 202, f"the second whole GPU must wait: {r.status_code} {r.text}"
    token = state["tokens"]["carol"]
    messages = []
    with hub.api("GET", "users/carol/servers/w2/progress", token, stream=True) as events:
        for line in events.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                messages.append(json.loads(line[5:]).get("message", ""))
                if "Waiting in line" in messages[-1]:
                    break
    assert any("position 1" in m for m in messages), messages
    assert not hub.api("GET", "users/carol", token).json()["servers"]["w2"]["ready"]
    r = hub.api("DELETE", "users/carol/servers/w1", token)
    assert r.status_code in (202, 204), r.text
    env2 = server_env(hub, "carol", "w2")
    assert env2["CUDA_VISIBLE_DEVICES"] == "1", "w2 got the GPU w1 gave back"


def test_restart_releases_the_slices_of_stopped_servers(hub):
    # JupyterHub stops its services before its servers on shutdown, so the running servers' slices cannot be
    # released then; `aistack-hub up` releases them when it starts again. carol's w2 holds GPU 1 now.
    assert usage(hub)["tenants"]["team-d"]["servers"] == 1
    stop_hub(hub)
    again = start_hub(TEST_CONFIG, os.path.dirname(hub.data_dir), log_name="hub-restarted.log")
    try:
        u = again.service("GET", "usage").json()
        assert u["tenants"].get("team-d", {}).get("servers", 0) == 0, dump(u)
        assert "released allocation" in again.log_tail(20000), again.log_tail()
        assert again.service("GET", "allocations").json()["allocations"] == []
        # and the whole GPU can be had again at once
        r = again.service("GET", "profiles", params={"tenant": "team-d", "user": "carol"})
        assert {p["slug"]: p["free"] for p in r.json()["profiles"]}["gpu-1"] == 1, r.text
    finally:
        stop_hub(again)
