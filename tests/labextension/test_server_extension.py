"""The lab server extension (aistack_lab) inside a real single-user server, against the real aistack service.

Every request goes browser-style through configurable-http-proxy to the user's server, authenticated with
the user's own token; the extension forwards to the service with the server's JupyterHub token.
"""
from __future__ import annotations

import json

import requests

from .conftest import params_notebook


def test_extension_is_loaded_and_knows_the_service(ana):
    r = ana.ext("GET", "info")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["user"] == "ana"
    assert info["service_url"].endswith("/services/aistack/api/"), info


def test_forwards_profiles_with_the_users_identity(ana):
    r = ana.ext("GET", "api/profiles?tenant=team-a")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant"] == "team-a"
    slugs = {p["slug"]: p for p in body["profiles"]}
    assert {"cpu", "quarter"} <= set(slugs), body
    assert "free" in slugs["quarter"] and "quota_left" in slugs["quarter"]
    # who ana is to the service: her one tenant, with the emergency grant of the test config
    r = ana.ext("GET", "api/me")
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["name"] == "ana" and [t["name"] for t in me["tenants"]] == ["team-a"], me
    assert me["tenants"][0]["emergency"] is True and me["tenants"][0]["admin"] is False, me
    # ana is not in team-b: the service answers 403 through the extension, unchanged
    r = ana.ext("GET", "api/profiles?tenant=team-b")
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"


def test_inspect_reads_saved_and_unsaved_notebooks(ana):
    ana.put_notebook("demo.ipynb", params_notebook())
    r = ana.ext("POST", "inspect", json={"path": "demo.ipynb"})
    assert r.status_code == 200, r.text
    params = {p["name"]: p for p in r.json()["parameters"]}
    assert list(params) == ["greeting", "repeat", "scale", "loud"]
    assert params["repeat"]["type"] == "int" and params["greeting"]["type"] == "str"
    assert params["greeting"]["help"] == "what to print"
    # the unsaved model the UI sends wins over the file on disk
    unsaved = params_notebook()
    unsaved["cells"][1]["source"] = "epochs = 3"
    r = ana.ext("POST", "inspect", json={"path": "demo.ipynb", "content": unsaved})
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()["parameters"]] == ["epochs"]


def test_submit_runs_the_saved_notebook_and_opens_its_output(ana):
    r = ana.ext("POST", "jobs", json={"path": "demo.ipynb", "name": "demo-job", "profile": "cpu",
                                      "tenant": "team-a", "parameters": {"greeting": "hey", "repeat": 3},
                                      "kernel_name": "python3", "max_retries": 0})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] in ("queued", "admitted", "running"), job
    assert job["user"] == "ana" and job["parameters"] == {"greeting": "hey", "repeat": 3}
    done = ana.wait_job(job["id"])
    assert done["state"] == "succeeded", json.dumps(done)[:2000]
    assert done["progress"]["cells_done"] == done["progress"]["cells_total"] > 0
    # open the output: saved into ana's files, where JupyterLab opens it
    r = ana.ext("POST", f"jobs/{job['id']}/open-output", json={"directory": "results/run1"})
    assert r.status_code == 200, r.text
    path = r.json()["path"]
    assert path == f"results/run1/demo-job-{job['id']}.ipynb"
    nb = ana.request("GET", f"api/contents/{path}").json()["content"]
    text = json.dumps(nb)
    assert "RESULT heyheyhey 1.5" in text, "the parameters' effect is in the output"
    # logs come through as text
    r = ana.ext("GET", f"api/jobs/{job['id']}/logs")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), r.text[:300]


def test_a_failing_notebook_names_the_failing_cell(ana):
    ana.put_notebook("fails.ipynb", params_notebook("raise ValueError(f'bad scale {scale}')"))
    r = ana.ext("POST", "jobs", json={"path": "fails.ipynb", "name": "fails", "profile": "cpu",
                                      "parameters": {"scale": 2.0}})
    assert r.status_code == 201, r.text
    done = ana.wait_job(r.json()["id"])
    assert done["state"] == "failed"
    failure = done["failure"]
    assert failure["class"] == "cell_error" and failure["ename"] == "ValueError", failure
    assert "bad scale 2.0" in failure["evalue"], failure
    # cell_index counts cells of the output notebook (papermill inserts the injected parameters): there
    # the failing cell is the one that raised, with the error as its output
    r = ana.ext("POST", f"jobs/{done['id']}/open-output", json={})
    assert r.status_code == 200, r.text
    out = ana.request("GET", f"api/contents/{r.json()['path']}").json()["content"]
    cell = out["cells"][failure["cell_index"]]
    assert "raise ValueError" in cell["source"], cell
    assert any(o.get("ename") == "ValueError" for o in cell["outputs"]), cell["outputs"]


def test_sweep_submits_a_group(ana):
    r = ana.ext("POST", "jobs", json={"path": "demo.ipynb", "name": "sweep", "profile": "cpu",
                                      "parameters": {"loud": True}, "sweep": {"repeat": [1, 2], "scale": [1.0, 2.0]}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["jobs"]) == 4 and body["group_id"]
    assert {(j["parameters"]["repeat"], j["parameters"]["scale"]) for j in body["jobs"]} == {(1, 1.0), (1, 2.0), (2, 1.0), (2, 2.0)}
    listed = ana.ext("GET", f"api/jobs?group_id={body['group_id']}").json()["jobs"]
    assert len(listed) == 4
    for j in body["jobs"]:
        ana.ext("POST", f"api/jobs/{j['id']}/cancel")
    for j in body["jobs"]:
        assert ana.wait_job(j["id"])["state"] in ("cancelled", "succeeded")


def test_rerun_and_cancel(ana):
    jobs = ana.ext("GET", "api/jobs?user=ana&state=succeeded").json()["jobs"]
    assert jobs, "an earlier test ran a job"
    r = ana.ext("POST", f"api/jobs/{jobs[0]['id']}/rerun")
    assert r.status_code == 201, r.text
    rerun = r.json()
    assert rerun["id"] != jobs[0]["id"] and rerun["parameters"] == jobs[0]["parameters"]
    r = ana.ext("POST", f"api/jobs/{rerun['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    assert ana.wait_job(rerun["id"])["state"] in ("cancelled", "succeeded")
    r = ana.ext("POST", f"api/jobs/{rerun['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "already_final", r.text


def test_bad_input_is_a_clear_4xx(ana):
    cases = [
        ("POST", "jobs", {"path": "demo.ipynb", "profile": "cpu", "parameters": {"repeat": "three"}}, 400, "repeat"),
        ("POST", "jobs", {"path": "demo.ipynb", "profile": "cpu", "parameters": {"nope": 1}}, 400, "unknown parameter"),
        ("POST", "jobs", {"path": "demo.ipynb", "profile": "no-such"}, 400, "no profile"),
        ("POST", "jobs", {"path": "demo.ipynb", "profile": "cpu", "name": "Bad Name"}, 400, "Kubernetes name"),
        ("POST", "jobs", {"path": "missing.ipynb", "profile": "cpu"}, 404, "missing.ipynb"),
        ("POST", "jobs", {"path": "../../etc/passwd.ipynb", "profile": "cpu"}, 404, ""),
        ("POST", "jobs", {"path": "notes.txt", "profile": "cpu"}, 400, "not a notebook"),
        ("POST", "jobs", {"content": {"cells": "no"}, "profile": "cpu"}, 400, "notebook"),
        ("POST", "jobs", {"profile": "cpu"}, 400, "path"),
        ("POST", "inspect", {"content": {"nbformat": 4, "cells": [{"bogus": 1}]}}, 400, "not a valid notebook"),
        ("POST", "jobs/1/open-output", {"directory": "../outside"}, 400, "inside"),
        ("GET", "api/jobs/999999", None, 404, "no job"),
        ("GET", "api/..%2F..%2Fhub%2Fapi%2Fusers", None, 400, "not a service path"),
    ]
    for method, path, body, status, words in cases:
        kw = {"json": body} if body is not None else {}
        r = ana.ext(method, path, **kw)
        assert r.status_code == status, f"{method} {path} {body}: {r.status_code} {r.text[:300]}"
        err = r.json()
        assert err["message"] and words.lower() in err["message"].lower(), (path, body, err)
    r = ana.ext("POST", "jobs", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_other_users_cannot_use_anas_server(lab_hub, ana):
    url = ana.server_url + "aistack-lab/api/jobs"
    r = requests.get(url, headers={"Authorization": f"token {lab_hub.tokens['bo']}"}, allow_redirects=False, timeout=30)
    assert r.status_code in (403, 404), r.status_code
    r = requests.get(url, allow_redirects=False, timeout=30)
    assert r.status_code in (302, 401, 403), r.status_code
    r = requests.post(url, json={}, allow_redirects=False, timeout=30)
    assert r.status_code in (302, 401, 403), r.status_code
