"""Benchmark: time from clicking Submit in the Run-as-job dialog to the job showing "running" in the Jobs
panel, in a real Chromium against a real hub (`aistack-hub up` with the lab tests' config, CPU profile).

Baseline in the same run: the same notebook submitted with `POST jobs` straight to the aistack service,
polling `GET jobs/{id}` every 50 ms until it is running. The ratio says what the UI adds (dialog close,
server extension, panel refresh) on top of the queue itself.

    .venv/bin/python benchmarks/lab_submit_to_running.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.hub.launcher import PASSWORD, start_hub, stop_hub  # noqa: E402
from tests.labextension.conftest import LAB_CONFIG, params_notebook  # noqa: E402


def api_submit_to_running(hub, token, nb, rounds):
    times = []
    for i in range(rounds):
        t0 = time.monotonic()
        r = hub.service("POST", "jobs", token, json={"notebook": nb, "profile": "cpu", "name": f"api-bench-{i}"})
        r.raise_for_status()
        jid = r.json()["id"]
        while True:
            state = hub.service("GET", f"jobs/{jid}", token).json()["state"]
            if state in ("running", "succeeded", "failed"):
                break
            time.sleep(0.05)
        times.append((time.monotonic() - t0) * 1000)
        while hub.service("GET", f"jobs/{jid}", token).json()["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-lab-bench-")
    os.chmod(tmp, 0o711)
    hub = start_hub(LAB_CONFIG, tmp)
    try:
        hub.signup("ana")
        hub.signup("admin")
        admin = hub.login("admin")
        admin.get(hub.url + "hub/authorize/ana")
        assert hub.login("ana") is not None
        hub.api("POST", "groups/team-a/users", json={"users": ["ana"]}).raise_for_status()
        token = hub.api("POST", "users/ana/tokens", json={"note": "bench"}).json()["token"]
        hub.api("POST", "users/ana/server", token, json={"tenant": "team-a", "profile": "cpu"})
        srv = hub.wait_ready("ana", "", token, timeout=120)
        base = hub.url.rstrip("/") + srv["url"]
        nb = params_notebook()
        import requests

        requests.put(base + "api/contents/bench.ipynb", headers={"Authorization": f"token {token}"},
                     json={"type": "notebook", "format": "json", "content": nb}, timeout=30).raise_for_status()
        env = dict(os.environ, MODE="submit", HUB_URL=hub.url, USER_NAME="ana", PASSWORD=PASSWORD,
                   ROUNDS=str(args.rounds))
        out = subprocess.run(["node", os.path.join(REPO, "benchmarks", "lab_bench.js")], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=900)
        res = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
        if res.get("error"):
            sys.exit(f"browser run failed: {res['error']}")
        api = api_submit_to_running(hub, token, nb, args.rounds)
    finally:
        stop_hub(hub)
    ui = res["submitToRunningMs"]
    print(f"rounds: {args.rounds} (CPU profile, notebook of 3 code cells, Chromium {CHROMIUM_NOTE})")
    print(f"UI  click Submit -> listed in panel : median {statistics.median(res['submitToListedMs']):7.0f} ms  "
          f"all {res['submitToListedMs']}")
    print(f"UI  click Submit -> running in panel: median {statistics.median(ui):7.0f} ms  all {ui}")
    print(f"API POST jobs -> GET says running   : median {statistics.median(api):7.0f} ms  all {[round(x) for x in api]}")
    print(f"ratio UI/API (median): {statistics.median(ui) / statistics.median(api):.2f}")


CHROMIUM_NOTE = "headless, /usr/bin/chromium"

if __name__ == "__main__":
    main()
