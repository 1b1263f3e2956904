"""Least disclosure and revocation, behind the real JupyterHub (tokens and groups checked by HubAuth).

The service uses the NoopExecutor: a job "runs" for an hour on its slice without a kernel.
"""
from __future__ import annotations

import pytest
import requests

from job_service.helpers import ServiceProcess, make_notebook, wait_for


@pytest.fixture(scope="module")
def svc(hub, deployment_path, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("hubsvc")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "NoopExecutor": {"duration_s": 3600},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}
    s = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"], config=cfg)
    s.start()
    yield s
    s.stop()


def _admin(hub) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub['admin_token']}"
    return s


def test_a_revoked_token_is_refused_on_the_next_request(hub, svc):
    """Closes: a revoked token keeps working ~60 s (refused on the next request)."""
    admin = _admin(hub)
    r = admin.post(f"{hub['api']}/users/alice/tokens", json={"note": "to revoke"})
    assert r.status_code == 201, r.text
    token, token_id = r.json()["token"], r.json()["id"]
    s = svc.session(token)
    for _ in range(3):  # used (and cached, were there a cache) ...
        assert s.get(svc.api + "me").status_code == 200
    assert admin.delete(f"{hub['api']}/users/alice/tokens/{token_id}").status_code == 204
    r = s.get(svc.api + "me")  # ... refused at once
    assert r.status_code == 403 and "invalid or expired token" in r.json()["message"]


def test_a_removed_member_is_refused_on_the_next_request(hub, svc):
    """Closes: a removed member keeps working ~60 s (membership changes take effect on the next request)."""
    admin = _admin(hub)
    assert admin.post(f"{hub['api']}/users/frank").status_code in (201, 409)
    assert admin.post(f"{hub['api']}/groups/team-b/users", json={"users": ["frank"]}).status_code == 200
    token = admin.post(f"{hub['api']}/users/frank/tokens", json={"note": "t"}).json()["token"]
    s = svc.session(token)
    body = {"notebook": make_notebook("1"), "profile": "cpu", "tenant": "team-b"}
    assert [t["name"] for t in s.get(svc.api + "me").json()["tenants"]] == ["team-b"]
    first = s.post(svc.api + "jobs", json=body)
    assert first.status_code == 201, first.text
    r = admin.delete(f"{hub['api']}/groups/team-b/users", json={"users": ["frank"]})
    assert r.status_code == 200, r.text
    r = s.post(svc.api + "jobs", json=body)
    assert r.status_code == 403 and "not a member of tenant 'team-b'" in r.json()["message"], r.text
    assert s.get(svc.api + "me").json()["tenants"] == []


def test_inventory_shows_other_tenants_workloads_only_to_platform_admins(hub, svc):
    """Closes: GET inventory shows other tenants' workloads to anyone."""
    tokens = hub["tokens"]
    bob = svc.session(tokens["bob"])
    r = bob.post(svc.api + "jobs", json={"notebook": make_notebook("1"), "profile": "gpu-quarter", "tenant": "team-a"})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    wait_for(lambda: bob.get(svc.api + f"jobs/{jid}").json()["state"] == "running", 30, what="bob's job to run")

    def workloads(user):
        inv = svc.session(tokens[user]).get(svc.api + "inventory").json()
        gpus = [g for n in inv["nodes"] for g in n["gpus"]]
        return [w for g in gpus for w in g["workloads"]], sum(g["used_milli"] for g in gpus)

    for user in ("dave", "alice"):  # another tenant's member; a member of bob's tenant who is not its admin
        seen, used = workloads(user)
        assert not [w for w in seen if w["user"] != user], (user, seen)
        assert used >= 250  # capacity in use is shown, not whose it is
    for user in ("root", "carol", "bob"):  # a platform admin; team-a's tenant admin; the owner
        seen, _ = workloads(user)
        assert [w for w in seen if w["id"] == f"job-{jid}" and w["user"] == "bob" and w["tenant"] == "team-a"], user
    bob.post(svc.api + f"jobs/{jid}/cancel")
