"""The environment catalog, for real: an admin adds environments (a Python interpreter, for which we write a
kernelspec; an existing kernelspec; an image for Kubernetes), each tenant is offered its own, bad entries are
refused with a message, and a job run with environment X runs in X's kernel.

The second kernel is cheap on purpose: a kernelspec of the same interpreter whose environment carries a
marker variable (AISTACK_ENVIRONMENT, MARKER); a job without the environment, run beside it, lacks both, so
the marker can only come from the chosen kernel."""
from __future__ import annotations

import os
import sys

from tests.job_service.helpers import make_notebook, wait_for
from tests.storage.test_embedded import _probe

PROBE = ('import json, os, sys\nprint("PROBE" + json.dumps({"env": os.environ.get("AISTACK_ENVIRONMENT"), '
         '"marker": os.environ.get("MARKER"), "python": sys.executable}))')


def _final(s, api, job_id):
    def final():
        j = s.get(f"{api}jobs/{job_id}").json()
        return j if j["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(final, 120, 0.3, f"job {job_id} to end")


def test_catalog_per_tenant_and_a_job_runs_in_the_chosen_kernel(hub, storage_service):
    svc, api = storage_service, storage_service.api
    admin = svc.session(hub["admin_token"])
    alice, dave = svc.session(hub["tokens"]["alice"]), svc.session(hub["tokens"]["dave"])
    r = admin.put(api + "environments/marker", json={"display_name": "Marker Python", "python": sys.executable,
                                                     "env": {"MARKER": "env-x"}, "tenants": ["team-a"]})
    assert r.status_code == 201, r.text
    assert r.json()["kernel_name"] == "aistack-marker"
    r = admin.put(api + "environments/pytorch", json={"image": "aistack/pytorch:2.4", "kernel_name": "python3"})
    assert r.status_code == 201, r.text
    # refusals say what is wrong
    for body, word in (({"python": "relative/python"}, "absolute"), ({"python": "/nope/bin/python"}, "executable"),
                       ({}, "say what"), ({"image": "a b"}, "image"), ({"image": "x", "tenants": ["nope"]}, "nope"),
                       ({"image": "x", "env": {"AISTACK_TOKEN": "1"}}, "env")):
        r = admin.put(api + "environments/bad", json=body)
        assert r.status_code == 400 and word in r.json()["message"], (body, r.text)
    assert alice.put(api + "environments/mine", json={"image": "x"}).status_code == 403

    # offered per tenant
    names = [e["name"] for e in alice.get(api + "environments", params={"tenant": "team-a"}).json()["items"]]
    assert names == ["marker", "pytorch"]
    names = [e["name"] for e in dave.get(api + "environments", params={"tenant": "team-b"}).json()["items"]]
    assert names == ["pytorch"]
    assert dave.get(api + "environments", params={"tenant": "team-a"}).status_code == 404
    spec = svc.root / "environments" / "team-a" / "kernels" / "aistack-marker" / "kernel.json"
    assert spec.is_file() and not (svc.root / "environments" / "team-b" / "kernels" / "aistack-marker").exists()

    # a job with the environment runs in its kernel; one without, beside it, does not
    nb = make_notebook(PROBE)
    # another tenant's environment: its kernelspec is installed (for the service's check) but team-b may not
    # use it: refused at submission with the reason, not failed at start
    r = dave.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-b",
                                      "kernel_name": "aistack-marker"})
    assert r.status_code == 403 and r.json()["error"] == "environment_not_offered", r.text
    assert "marker" in r.json()["message"] and "team-b" in r.json()["message"], r.text
    with_env = alice.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-a",
                                              "kernel_name": "aistack-marker"})
    without = alice.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-a"})
    assert with_env.status_code == 201 and without.status_code == 201, (with_env.text, without.text)
    a, b = _final(alice, api, with_env.json()["id"]), _final(alice, api, without.json()["id"])
    assert a["state"] == "succeeded" and b["state"] == "succeeded", (a, b, svc.log_tail())
    assert a["kernel_name"] == "aistack-marker"
    got, plain = _probe(alice, api, a["id"]), _probe(alice, api, b["id"])
    assert got["env"] == "marker" and got["marker"] == "env-x", got
    assert plain["env"] is None and plain["marker"] is None, plain
    assert os.path.realpath(got["python"]) == os.path.realpath(sys.executable)

    # removed: no longer offered, its kernelspec gone
    assert admin.delete(api + "environments/marker").status_code == 204
    assert [e["name"] for e in alice.get(api + "environments").json()["items"]] == ["pytorch"]
    assert not spec.exists()
    assert admin.delete(api + "environments/marker").status_code == 404
