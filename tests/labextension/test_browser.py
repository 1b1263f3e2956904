"""The Run-as-job flow in a real browser: Debian's Chromium driven by playwright-core (browser/run_as_job.js)
against the real hub of conftest.py. Screenshots: test-artifacts/labextension/browser/*.png."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import ARTIFACTS, REPO, params_notebook

CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.browser
def test_run_as_job_in_chromium(lab_hub, ana):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test` (45-chromium.sh)"
    assert os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")), \
        "playwright-core is missing: run `bash scripts/setup.sh test` (40-labextension.sh runs jlpm install)"
    assert os.path.exists(os.path.join(REPO, "labextension", "aistack_lab", "labextension", "package.json")), \
        "the lab extension is not built: run `bash scripts/setup.sh test`"
    ana.put_notebook("demo.ipynb", params_notebook())
    ana.put_notebook("fails.ipynb", params_notebook("raise ValueError(f'bad scale {scale}')"))
    # JupyterLab would ask whether to fetch Jupyter news (a toast over the screenshots): answer it in settings
    ana.fresh_lab()
    shots = os.path.join(ARTIFACTS, "browser")
    shutil.rmtree(shots, ignore_errors=True)
    env = dict(os.environ, HUB_URL=lab_hub.url, USER_NAME="ana", PASSWORD=lab_hub.password, ARTIFACTS=shots,
               CHROMIUM=CHROMIUM)
    out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser", "run_as_job.js")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser script (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    res = json.loads(lines[-1])
    with open(os.path.join(ARTIFACTS, "browser-results.json"), "w") as f:
        json.dump(res, f, indent=1)
    assert not res.get("error"), f"{res['error']}\nsteps done: {res.get('steps')}\n{out.stderr[-3000:]}\n{lab_hub.log_tail(3000)}"

    # the dialog: typed form from the parameters cell, profiles with capacity, emergency granted to ana
    assert [p[0] for p in res["formParams"]] == ["greeting", "repeat", "scale", "loud"], res["formParams"]
    assert dict((p[0], p[1]) for p in res["formParams"])["repeat"] == "int"
    assert "free now" in res["profileSummary"], res["profileSummary"]
    assert "emergency" in res["priorities"] and "high" in res["priorities"], res["priorities"]
    assert "whole number" in res["invalidMessage"] and res["submitDisabledWhenInvalid"] is True, res
    assert res["submitDisabledWhenValid"] is False
    assert res["submitNotification"] and "browser-demo" in res["submitNotification"], res
    # the panel followed the job to success; the output carries the new parameters' effect
    assert res["finalState"] == "succeeded", res
    assert res["outputHasEffect"] and res["logShown"]
    assert res["downloadName"] == f"browser-demo-{res['jobId']}.ipynb" and res["downloadHasEffect"], res
    assert "browser-demo" in res["outputTab"], res["outputTab"]
    # rerun with edits starts from the job's values; a sweep makes one group of jobs
    assert res["rerunPrefill"] == "bonjour", res["rerunPrefill"]
    assert "2 jobs" in res["sweepNote"], res["sweepNote"]
    assert res["sweepGroupSize"] == 2 and "Sweep of 2 jobs" in res["sweepTitle"], res
    assert set(res["sweepStates"]) <= {"succeeded", "cancelled"}, res["sweepStates"]
    # a job takes seconds (kernel start, a 1.5 s cell): cancelled at once, it ends cancelled
    assert res["cancelledState"] == "cancelled", res
    # the failing notebook names and shows its failing cell
    assert "raised ValueError" in res["failureText"] and "bad scale" in res["failureText"], res["failureText"]
    # as JupyterLab shows the cell to the user: the 3rd code cell, not the output notebook's index (Closes: the
    # failure message names the output notebook's cell index ("Cell 4") instead of the user's cell ("In [3]"))
    assert res["failureText"].startswith("In [3] raised ValueError"), res["failureText"]
    assert "raise ValueError" in res["failingCellSource"], res["failingCellSource"]
    assert res["failingCellActive"] is True, "Open output selects the cell that raised"

    # keyboard: the palette opens the dialog with the focus in its first field
    assert res["focusInDialog"] == "name", res
    # the job the browser submitted is really in the service, with the edited parameters
    job = ana.ext("GET", f"api/jobs/{res['jobId']}").json()
    assert job["parameters"] == {"greeting": "bonjour", "repeat": 4}, job["parameters"]
    for name in ("02-notebook-with-run-as-job", "04-dialog-filled", "06-panel-succeeded", "07-output-notebook",
                 "10-failing-cell"):
        assert os.path.getsize(os.path.join(shots, f"{name}.png")) > 10_000, name
