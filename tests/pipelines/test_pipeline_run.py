"""A 3-stage pipeline with a fan-out of 4 through the real service (real JupyterHub tokens, real papermill
jobs): fail-fast, retry of the one failed branch, outputs passed on; bad files answered 400 with the line."""
from __future__ import annotations

import json
import os

import requests

from tests.job_service.helpers import make_notebook, wait_for

PREP = make_notebook(
    "import os\npath = os.path.join(os.environ['HOME'], out)\nos.makedirs(os.path.dirname(path), exist_ok=True)\n"
    "open(path, 'w').write('41')", params="out = ''")
# Branch lr=2 fails until the user has fixed things (the file 'fixed' in the home); the others take 4 s, so
# they are still running when it fails (fail-fast lets them finish and starts nothing new).
TRAIN = make_notebook(
    "import os, time\nfrom job_runner.pipelines import report\n"
    "base = int(open(os.path.join(os.environ['HOME'], data)).read())\n"
    "if lr == 2 and not os.path.exists(os.path.join(os.environ['HOME'], 'fixed')):\n"
    "    raise ValueError('diverged at lr=2')\n"
    "time.sleep(0 if lr == 2 else 4)\nreport(acc=base + lr)", params="lr = 0\ndata = ''")
REPORT = make_notebook(
    "import os, json\nfrom job_runner.pipelines import report\nreport(best=max(accs))", params="accs = []")

PIPELINE = """\
name: demo
parallelism: 4
defaults:
  profile: cpu
tasks:
  - name: prep
    notebook: prep.ipynb
    parameters: {out: "{{run.dir}}/data.txt"}
    outputs:
      files: {data: data.txt}
  - name: train
    notebook: train.ipynb
    depends: [prep]
    fan_out: {parameter: lr, values: [1, 2, 3, 4], parallelism: 3}
    parameters: {data: "{{tasks.prep.outputs.files.data}}"}
    outputs: {parameters: [acc]}
  - name: report
    notebook: report.ipynb
    depends: [train]
    parameters: {accs: "{{tasks.train.outputs.parameters.acc}}"}
    outputs: {parameters: [best]}
"""


def _write_project(home):
    proj = home / "proj"
    proj.mkdir(parents=True, exist_ok=True)
    for name, nb in (("prep.ipynb", PREP), ("train.ipynb", TRAIN), ("report.ipynb", REPORT)):
        (proj / name).write_text(json.dumps(nb))
    (proj / "demo.pipeline.yaml").write_text(PIPELINE)
    # written by the test (root), used by the job's account as its own folder would be: writable for it
    os.chmod(proj, 0o777)


def _nodes(run):
    return {n["key"]: n for n in run["nodes"]}


def test_fan_out_fail_fast_retry_one_task(hub, pipeline_service, homes):
    api = pipeline_service.api
    s = pipeline_service.session(hub["tokens"]["alice"])
    home = homes / "alice"
    _write_project(home)
    r = s.post(api + "pipelines/runs", json={"path": "proj/demo.pipeline.yaml"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert [n["key"] for n in r.json()["nodes"]] == ["prep", "train[0]", "train[1]", "train[2]", "train[3]", "report"]

    def ended():
        run = s.get(f"{api}pipelines/runs/{run_id}").json()
        return run if run["state"] != "running" else None

    run = wait_for(ended, 180, 0.5, "the run to fail")
    nodes = _nodes(run)
    assert run["state"] == "failed", run
    assert nodes["prep"]["state"] == "succeeded", json.dumps(nodes["prep"])
    assert nodes["prep"]["files"] == {"data": f"proj/pipeline-runs/demo-{run_id}/data.txt"}
    # fail-fast: the failing branch failed while two others ran; they finished, the fourth never started
    assert nodes["train[1]"]["state"] == "failed" and "diverged at lr=2" in nodes["train[1]"]["message"]
    assert nodes["train[0]"]["state"] == nodes["train[2]"]["state"] == "succeeded"
    assert nodes["train[3]"]["state"] == "skipped" and nodes["train[3]"]["attempts"] == 0
    assert "fail_fast" in nodes["train[3]"]["message"]
    assert nodes["report"]["state"] == "skipped" and nodes["report"]["attempts"] == 0
    assert nodes["train[0]"]["values"] == {"acc": 42} and nodes["train[2]"]["values"] == {"acc": 44}
    failed_job = nodes["train[1]"]["job_id"]
    job = s.get(f"{api}jobs/{failed_job}").json()  # an ordinary job: its failure, its tenant, its profile
    assert job["state"] == "failed" and job["tenant"] == "team-a" and job["profile"] == "cpu"
    assert job["parameters"]["lr"] == 2
    notes = s.get(api + "notifications").json()["notifications"]
    assert any(n["kind"] == "pipeline_failed" and n["link"] == f"pipelines/runs/{run_id}" for n in notes), notes

    # retry of a task that did not fail is refused; of the failed one, accepted
    r = s.post(f"{api}pipelines/runs/{run_id}/tasks/prep/retry")
    assert r.status_code == 409 and r.json()["error"] == "not_failed", r.text
    (home / "fixed").write_text("yes")
    r = s.post(f"{api}pipelines/runs/{run_id}/tasks/train[1]/retry")
    assert r.status_code == 202 and r.json()["retried"] == ["train[1]"], r.text
    run = wait_for(ended, 180, 0.5, "the retried run to end")
    nodes = _nodes(run)
    assert run["state"] == "succeeded", run
    # what had succeeded was kept (one job each); the failed branch had a second job
    assert len(nodes["prep"]["job_ids"]) == 1 and len(nodes["train[0]"]["job_ids"]) == 1
    assert nodes["train[1]"]["attempts"] == 2 and nodes["train[1]"]["job_ids"][0] == failed_job
    assert nodes["train[3]"]["attempts"] == 1
    assert nodes["report"]["parameters"] == {"accs": [42, 43, 44, 45]}
    assert nodes["report"]["values"] == {"best": 45}
    assert os.path.exists(home / "proj" / "pipeline-runs" / f"demo-{run_id}" / "data.txt")


def _error(s, api, text):
    r = s.post(api + "pipelines/runs", json={"spec": text})
    assert r.status_code == 400, r.text
    return r.json()


def test_bad_files_are_refused_with_the_line(hub, pipeline_service):
    api = pipeline_service.api
    s = pipeline_service.session(hub["tokens"]["alice"])
    head = "name: bad\ndefaults: {profile: cpu}\ntasks:\n"
    e = _error(s, api, head + "  - name: a\n    notebook: a.ipynb\n    depends: [b]\n  - name: b\n"
               "    notebook: b.ipynb\n    depends: [a]\n")
    assert e["error"] == "cycle" and e["line"] == 6 and "a -> b -> a" in e["message"]
    e = _error(s, api, head + "  - name: a\n    notebook: a.ipynb\n    depends: [nope]\n")
    assert e["error"] == "unknown_task" and e["line"] == 6
    e = _error(s, api, head + "  - name: a\n    notebook: a.ipynb\n  - name: b\n    notebook: b.ipynb\n"
               "    profile: gpu-huge\n")
    assert e["error"] == "unknown_profile" and e["line"] == 8
    e = _error(s, api, head + "  - name: a\n    notebook: a.ipynb\n    outputs:\n      files:\n"
               "        model: ../../../etc/cron.d/x\n")
    assert e["error"] == "path_escapes" and e["line"] == 8
    e = _error(s, api, head + "  - name: a\n    notebook: a.ipynb\n    profile: team-b-only\n")
    assert e["error"] == "unknown_profile" and e["line"] == 6  # not offered to alice's tenant
    e = _error(s, api, "name: bad\ntasks: [\n")
    assert e["error"] == "bad_pipeline" and e["line"] == 3
    # the schema is published without a token
    schema = requests.get(api + "pipelines/schema", timeout=10).json()
    assert schema["title"].startswith("AIStack pipeline") and "fan_out" in json.dumps(schema)
    # someone else's run is not found
    r = s.post(api + "pipelines/validate", json={"spec": head + "  - name: a\n    notebook: a.ipynb\n"})
    assert r.status_code == 200 and r.json()["tasks"][0]["name"] == "a", r.text
