"""A pruned trial whose kernel is slow to exit keeps its outcome: pruned by the rule at step N.

The real aistack service (LocalExecutor, real papermill kernels, SQLite) runs an ASHA experiment whose
notebook's kernel stalls on exit (an ``atexit`` sleep: what a training loop's data-loader workers or an
unflushed writer do). A pruned trial ends itself at its next ``report()`` (the stop marker), then its runner
waits on that kernel; the cancel that follows the prune after ``stop_grace_s`` (here 0.3 s) therefore always
reaches the runner mid-shutdown. The job must still be recorded as the run itself said (class "cancelled",
"pruned by the experiment's rule at step N"), not as "cancelled by request": the controller keeps the
outcome of a run that had stopped itself. (CI once failed the ASHA test on exactly this, at load.)"""
from __future__ import annotations

import re
import time

import pytest

from tests.experiments.conftest import experiment_service
from tests.job_service.helpers import make_notebook

TRAIN_STALLING_EXIT = """
import atexit, time
from job_runner import report
atexit.register(time.sleep, 30)  # the kernel's exit stalls: the runner's shutdown of it waits
for epoch in range(1, epochs + 1):
    time.sleep(0.25)
    report(step=epoch, accuracy=1 - lr / epoch)
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 2},
           "ExperimentSettings": {"max_trials": 50, "pass_interval_s": 0.2, "stop_grace_s": 0.3}}
    with experiment_service(tmp_path_factory, "prune", cfg) as s:
        yield s


def test_a_pruned_trial_cancelled_while_its_kernel_exits_is_recorded_as_pruned(svc):
    s, api = svc.session(), svc.api
    r = s.post(api + "experiments", json={
        "notebook": make_notebook(TRAIN_STALLING_EXIT, params="lr = 0.1\nepochs = 3"), "profile": "cpu",
        "tenant": "team-a", "name": "stalls", "space": {"lr": [0.1, 0.4, 0.7, 0.9]},
        "objective": {"metric": "accuracy", "mode": "max"}, "strategy": "asha", "parallelism": 2,
        "budget": {"parameter": "epochs", "max": 9}, "pruner": {"min_resource": 1, "reduction_factor": 3},
        "seed": 1})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    deadline = time.time() + 300
    while time.time() < deadline:
        e = s.get(api + f"experiments/{eid}").json()
        if e["state"] != "running":
            break
        time.sleep(0.5)
    assert e["state"] == "completed", e
    pruned = [t for t in e["trials"] if t["state"] == "pruned"]
    assert pruned, [(t["parameters"], t["state"], t["last_step"]) for t in e["trials"]]
    for t in pruned:
        fail = t["failure"] or {}
        assert fail.get("class") == "cancelled", t
        assert re.search(r"pruned by the experiment's rule at step \d+", fail.get("message") or ""), t
        log = s.get(api + f"jobs/{t['job_id']}/logs").text
        # the cancel did reach it mid-shutdown: this test is about that path
        assert "SIGTERM while its kernel shut down" in log, log[-3000:]
