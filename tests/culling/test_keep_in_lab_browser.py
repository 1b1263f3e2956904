"""GPU-aware idle culling's warning in JupyterLab, in a real Chromium against a real AIStack Hub
(``aistack-hub up``): ana's server holds a 1/4-GPU slice whose GPU reads idle. This machine has no GPU, so
the utilisation is fed (``Monitor.source=file``: the service reads a samples file the test writes, 0 %);
everything after the numbers is the real path: the service's idle state and policy, the lab extension's
idle watch (labextension/src/idle.ts) showing the warning with "Keep for 1/2/8 h", the click, the service's
keep, and the warning gone. Screenshots: test-artifacts/culling/browser/*.png."""
from __future__ import annotations

import json
import os

import pytest

from tests.hub.launcher import PASSWORD, run_browser_script, running_hub
from tests.job_service.helpers import wait_for
from tests.labextension.conftest import LAB_CONFIG, REPO

CHROMIUM = os.environ.get("AISTACK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(REPO, "test-artifacts", "culling", "browser")


def feed(path: str, util_pct: float) -> None:
    """The stand-in for the GPU: test-node's GPU 0 at ``util_pct`` (written atomically)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"gpus": [{"node": "test-node", "gpu": "0", "util_pct": util_pct, "mem_used_mib": 1000.0,
                             "mem_total_mib": 81920.0, "model": "A100-80GB"}]}, f)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def idle_hub(tmp_path_factory):
    samples = str(tmp_path_factory.mktemp("gpu-feed") / "gpu-samples.json")
    feed(samples, 0.0)
    # idle for 600 s stops the server, warned 595 s before: the warning comes after ~5 s of idleness and
    # the stop never within the test
    cfg = {**LAB_CONFIG, "Monitor": {"source": "file", "samples_file": samples, "interval_s": 0.5,
                                     "idle_s": 600, "idle_warn_s": 595, "idle_threshold_pct": 5,
                                     "max_keep_hours": 8}}
    with running_hub(cfg, "aistack-keep-", os.path.join("culling", "browser")) as hub:
        token = hub.approved_member("ana", "team-a", "keep test")
        r = hub.api("POST", "users/ana/server", token, json={"tenant": "team-a", "profile": "quarter"})
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("ana", "", token, timeout=120)
        yield hub, token


@pytest.mark.browser
def test_the_idle_warning_offers_keep_and_keeping_postpones_the_stop(idle_hub):
    hub, token = idle_hub
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `bash scripts/setup.sh test`"

    def warned():
        r = hub.service("GET", "monitoring/idle", token)
        items = [i for i in r.json().get("items", []) if i["action"] == "warn"] if r.status_code == 200 else []
        return items[0] if items else None
    item = wait_for(warned, 90, what="the service to warn about ana's idle GPU server")
    res = run_browser_script(os.path.join(os.path.dirname(__file__), "browser", "keep.js"), dict(
        HUB_URL=hub.url, USER_NAME="ana", PASSWORD=PASSWORD, ARTIFACTS=ARTIFACTS, CHROMIUM=CHROMIUM),
        timeout=300, hub=hub)
    assert "idle" in res["warning"] and res["buttons"] == ["Keep for 1 h", "Keep for 2 h", "Keep for 8 h"], res
    assert "will not be stopped for 1 h" in res["kept"], res
    # the service agrees: kept (no warning, the stop postponed by an hour)
    r = hub.service("GET", f"monitoring/idle/{item['allocation_id']}", token)
    assert r.status_code == 200 and r.json()["action"] == "ok" and r.json()["reason"].startswith("kept until"), r.text
    for name in ("01-warned", "02-kept"):
        assert os.path.getsize(os.path.join(ARTIFACTS, f"{name}.png")) > 10_000, name
