"""The pipeline view in a real Chromium (playwright-core) against a real AIStack Hub (``aistack-hub up``, the
lab extension tests' setup plus ``notebook_root`` so that the service reads the pipeline file and its
notebooks from the user's home): a 2-task pipeline (``prep`` succeeds, ``train`` after it fails, real
papermill jobs) is opened from the command palette as a graph, run from its toolbar; the graph shows both
tasks with their states, the failed task offers Retry, and the retry gives it a second attempt. Then
"Schedule…" from the palette on that view: an invalid cron is refused with the API's message and the dialog
keeps what was typed; a valid cron creates the schedule, the Schedules list shows it, and the API has it
with the cron and time zone sent (deleted at the end, so it never fires).
Then the notices (issues 14, 15): a pipeline run of ana's fails while no browser is open and a job of hers
waits because team-a's quota is used up; a fresh browser opening her lab shows both as JupyterLab
notifications (the failure from GET notifications, the reminder from GET accounting/reminders).
Screenshots: test-artifacts/pipelines/browser/*.png."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import nbformat
import pytest

from tests.hub.launcher import PASSWORD, run_browser_script, start_hub, stop_hub
from tests.job_service.helpers import wait_for
from tests.labextension.conftest import LAB_CONFIG, REPO, LabUser, _start_server

CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(REPO, "test-artifacts", "pipelines", "browser")
PIPELINE = """name: view-demo
defaults: {profile: cpu}
tasks:
  - name: prep
    notebook: ok.ipynb
  - name: train
    notebook: bad.ipynb
    depends: [prep]
"""


def notebook(source: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source)]
    return json.loads(nbformat.writes(nb))


@pytest.fixture(scope="module")
def view_hub():
    """tests/labextension/conftest.py's lab_hub, with the users' homes where the service reads paths."""
    tmp = tempfile.mkdtemp(prefix="aistack-pipeline-view-")
    os.chmod(tmp, 0o711)
    homes = tempfile.mkdtemp(prefix="aistack-pipeline-view-homes-", dir="/home")
    os.chmod(homes, 0o755)
    # team-a may hold one 1/4 GPU at a time: the notices test's second quarter job waits for the quota
    tenants = [{**t, "quotas": {"any": {"gpu_milli": 250, "cpu_milli": 8000}}} if t["name"] == "team-a" else t
               for t in LAB_CONFIG["tenants"]]
    cfg = {**LAB_CONFIG, "tenants": tenants, "Isolation": {"home_root": homes},
           "AIStackService": {"notebook_root": os.path.join(homes, "{user}")},
           "PipelineSettings": {"tick_interval_s": 0.3}}
    hub = start_hub(cfg, tmp)
    try:
        token = hub.approved_member("ana", "team-a", "pipeline view test")
        hub.password = PASSWORD
        yield hub, LabUser(hub, "ana", token, _start_server(hub, "ana", token, "team-a"))
    finally:
        stop_hub(hub)
        os.makedirs(ARTIFACTS, exist_ok=True)
        shutil.copy(hub.log_path, os.path.join(ARTIFACTS, "hub.log"))
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(homes, ignore_errors=True)


@pytest.mark.browser
def test_pipeline_view_in_chromium(view_hub):
    hub, ana = view_hub
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test`"
    assert os.path.exists(os.path.join(REPO, "labextension", "aistack_lab", "labextension", "package.json")), \
        "the lab extension is not built: run `bash scripts/setup.sh test`"
    ana.fresh_lab()
    ana.put_notebook("ok.ipynb", notebook("print('prepared')"))
    ana.put_notebook("bad.ipynb", notebook("raise RuntimeError('train broke on purpose')"))
    r = ana.request("PUT", "api/contents/demo.pipeline.yaml",
                    json={"type": "file", "format": "text", "content": PIPELINE})
    assert r.status_code in (200, 201), r.text
    env = dict(os.environ, HUB_URL=hub.url, USER_NAME="ana", PASSWORD=hub.password, ARTIFACTS=ARTIFACTS,
               CHROMIUM=CHROMIUM, PIPELINE_PATH="demo.pipeline.yaml", SCHEDULE_NAME="nightly-demo",
               SCHEDULE_CRON="30 3 * * 1", SCHEDULE_TZ="Europe/Berlin")
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser", "pipeline_view.js")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    res = json.loads(lines[-1])
    try:
        check_view(hub, ana, res)
    finally:
        # nothing fires after the test: pause, then delete every schedule the browser made
        for s in ana.ext("GET", "api/schedules").json().get("schedules", []):
            ana.ext("POST", f"api/schedules/{s['id']}/pause")
            ana.ext("DELETE", f"api/schedules/{s['id']}")


def check_view(hub, ana, res):
    assert not res.get("error"), f"{res['error']}\nsteps: {res['steps']}\n{hub.log_tail(3000)}"
    assert res["tasks"] == {"prep": "succeeded", "train": "failed"}, res
    assert res["edges"] == 1, res
    assert "failed" in res["summary"] and "train" in res["summary"], res["summary"]
    assert res["retryOnPrep"] == 0 and res["retryOnTrain"] == 1, res
    assert "train broke on purpose" in res["log"], res["log"][-1500:]
    # the service agrees: the run failed on train, and the Retry button gave train a second attempt
    m = re.search(r"run (\d+) of view-demo", res["summary"])
    assert m, res["summary"]
    r = ana.ext("GET", f"api/pipelines/runs/{m.group(1)}")
    assert r.status_code == 200, r.text
    run = r.json()
    train = next(n for n in run["nodes"] if n["task"] == "train")
    assert train["attempts"] == 2 and len(train["job_ids"]) == 2, train
    for name in ("01-failed", "02-retried"):
        assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 10_000, name
    # Schedule…: the refused cron shows the service's own message (croniter's), the fields keep what was typed
    assert "invalid cron 'not a cron at all'" in res["scheduleError"], res["scheduleError"]
    assert (res["keptName"], res["keptCron"], res["keptTz"]) == ("nightly-demo", "not a cron at all",
                                                                  "Europe/Berlin"), res
    assert "nightly-demo" in res["scheduleRow"] and "30 3 * * 1 (Europe/Berlin)" in res["scheduleRow"], res
    r = ana.ext("GET", "api/schedules")
    assert r.status_code == 200, r.text
    made = [s for s in r.json()["schedules"] if s["name"] == "nightly-demo"]
    assert len(made) == 1, r.json()
    s = made[0]
    assert str(s["id"]) == res["scheduleId"], (s, res["scheduleId"])
    assert (s["kind"], s["target"]["path"], s["cron"], s["timezone"], s["on_window"]) == \
        ("pipeline", "demo.pipeline.yaml", "30 3 * * 1", "Europe/Berlin", False), s
    for name in ("03-schedule-refused", "04-schedules-list"):
        assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 10_000, name


@pytest.mark.browser
def test_failed_runs_and_quota_reminders_are_notifications_in_the_lab(view_hub):
    hub, ana = view_hub
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test`"
    ana.put_notebook("ok.ipynb", notebook("print('prepared')"))
    ana.put_notebook("bad.ipynb", notebook("raise RuntimeError('train broke on purpose')"))
    r = ana.request("PUT", "api/contents/notices.pipeline.yaml",
                    json={"type": "file", "format": "text", "content": PIPELINE})
    assert r.status_code in (200, 201), r.text
    r = ana.ext("POST", "api/pipelines/runs", json={"path": "notices.pipeline.yaml"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    hold = notebook("import time\ntime.sleep(600)")
    jobs = []
    try:
        for name in ("holds-the-quarter", "waits-for-quota"):
            r = ana.ext("POST", "api/jobs", json={"notebook": hold, "profile": "quarter", "tenant": "team-a",
                                                   "name": name})
            assert r.status_code == 201, r.text
            jobs.append(r.json()["id"])

        def settled():
            run = ana.ext("GET", f"api/pipelines/runs/{run_id}").json()
            waiting = ana.ext("GET", f"api/jobs/{jobs[1]}").json()
            return (run, waiting) if run["state"] == "failed" and waiting.get("pending_reason") == "quota" else None
        wait_for(settled, 180, what="the pipeline run to fail and the second job to wait for the quota")
        res = run_browser_script(os.path.join(os.path.dirname(__file__), "browser", "notices.js"), dict(
            HUB_URL=hub.url, USER_NAME="ana", PASSWORD=hub.password, ARTIFACTS=ARTIFACTS, CHROMIUM=CHROMIUM),
            timeout=300, hub=hub)
        toasts = res["toasts"]
        assert any(f"pipeline 'view-demo' (run {run_id}) failed" in t and "train" in t for t in toasts), toasts
        assert any("1 of your workloads in tenant team-a wait because its quota is used up" in t for t in toasts), toasts
        assert os.path.getsize(os.path.join(ARTIFACTS, "05-notices.png")) > 10_000
    finally:
        for job_id in jobs:
            ana.ext("POST", f"api/jobs/{job_id}/cancel")
