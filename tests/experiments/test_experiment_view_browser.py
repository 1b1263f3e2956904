"""The experiment view in a real Chromium (playwright-core) against a real AIStack Hub: an ASHA-free grid
experiment of two slow trials (real papermill jobs reporting each epoch), the view opened from the command
palette shows live curves, a trial is stopped and resumed with more budget from its buttons. Then, in the
same browser session, "Run as experiment" in the Run-as-job dialog of another notebook (a sweep of lr,
objective loss/min, strategy random, 1 trial at once) creates an experiment and opens its view; the API has
it with the strategy and objective chosen. Both experiments are cancelled at the end.
Screenshots: test-artifacts/experiments/browser/*.png."""
from __future__ import annotations

import json
import os
import subprocess

import nbformat
import pytest

from tests.labextension.conftest import REPO

CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(REPO, "test-artifacts", "experiments", "browser")
TRAIN = """
import json, os, time
from job_runner import report
ckpt = os.path.join(os.environ["AISTACK_CHECKPOINT_DIR"], "state.json")
start = json.load(open(ckpt))["epoch"] if os.path.exists(ckpt) else 0
for epoch in range(start + 1, epochs + 1):
    time.sleep(0.5)
    report(step=epoch, accuracy=1 - lr / epoch, loss=lr / epoch)
    json.dump({"epoch": epoch}, open(ckpt, "w"))
"""


def notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell("lr = 0.1\nepochs = 3")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(TRAIN)]
    return json.loads(nbformat.writes(nb))


@pytest.mark.browser
def test_experiment_view_in_chromium(lab_hub, ana):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test`"
    assert os.path.exists(os.path.join(REPO, "labextension", "aistack_lab", "labextension", "package.json")), \
        "the lab extension is not built: run `bash scripts/setup.sh test`"
    ana.fresh_lab()
    r = ana.ext("POST", "api/experiments", json={
        "notebook": notebook(), "profile": "cpu", "name": "view-demo", "space": {"lr": [0.1, 0.5]},
        "objective": {"metric": "accuracy", "mode": "max"}, "strategy": "grid", "parallelism": 2,
        "budget": {"parameter": "epochs", "max": 60}})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    ana.put_notebook("sweep-me.ipynb", notebook())
    env = dict(os.environ, HUB_URL=lab_hub.url, USER_NAME="ana", PASSWORD=lab_hub.password, ARTIFACTS=ARTIFACTS,
               CHROMIUM=CHROMIUM, EXPERIMENT_ID=str(eid), SWEEP_NOTEBOOK="sweep-me.ipynb",
               DIALOG_EXPERIMENT="from-dialog")
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser", "experiment_view.js")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    res = json.loads(lines[-1])
    try:
        assert not res.get("error"), f"{res['error']}\nsteps: {res['steps']}\n{lab_hub.log_tail(3000)}"
        assert res["grew"] and res["charts"][0] == "accuracy" and "loss" in res["charts"], res
        assert "view-demo" in res["summary"] and "grid" in res["summary"], res["summary"]
        assert "stopped" in res["stoppedText"] and "ana" in res["stoppedText"], res
        # the service agrees: the trial was resumed with more budget, on the same job
        e = ana.ext("GET", f"api/experiments/{eid}").json()
        t = e["trials"][int(res["trial"])]
        assert t["budget"] == 120 and t["steered"] and t["attempt"] == 2, t
        for name in ("01-live-curves", "02-stopped", "03-resumed"):
            assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 10_000, name
        # Run as experiment: the dialog showed the toggle only once a sweep was filled, then opened the view of
        # the experiment it created; the service has it with the objective and strategy picked in the dialog
        assert res["toggleHiddenBeforeSweep"], res
        assert "best loss (random)" in res["experimentNote"], res["experimentNote"]
        assert res["dialogExperimentId"] != str(eid) and "from-dialog" in res["dialogSummary"], res
        r = ana.ext("GET", f"api/experiments/{res['dialogExperimentId']}")
        assert r.status_code == 200, r.text
        made = r.json()
        assert (made["name"], made["strategy"], made["objective"], made["parallelism"]) == \
            ("from-dialog", "random", {"metric": "loss", "mode": "min"}, 1), made
        assert made["space"] == {"lr": [0.2, 0.4]} and made["notebook_path"] == "sweep-me.ipynb", made
        for name in ("04-run-as-experiment", "05-experiment-from-dialog"):
            assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 10_000, name
    finally:
        ana.ext("POST", f"api/experiments/{eid}/cancel")
        for e in ana.ext("GET", "api/experiments").json().get("experiments", []):
            if e["id"] != eid:
                ana.ext("POST", f"api/experiments/{e['id']}/cancel")
