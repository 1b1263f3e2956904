"""Experiments end to end: the real aistack service (LocalExecutor, real papermill kernels, SQLite), a real
training-shaped notebook that calls ``from job_runner import report`` each epoch and checkpoints to
AISTACK_CHECKPOINT_DIR; ASHA by Optuna prunes at its rungs, never more than ``parallelism`` trials hold slots,
a pruned trial resumes from its checkpoint with more budget, a metric never reported is said, bad input is 4xx.
The epochs are short sleeps: the work a training epoch would do, not synchronisation."""
from __future__ import annotations

import re
import time

import pytest

from tests.experiments.conftest import experiment_service
from tests.job_service.helpers import make_notebook, wait_for

TRAIN = """
import json, os, time
from job_runner import report
ckpt = os.path.join(os.environ["AISTACK_CHECKPOINT_DIR"], "state.json")
start = json.load(open(ckpt))["epoch"] if os.path.exists(ckpt) else 0
for epoch in range(start + 1, epochs + 1):
    time.sleep(0.25)
    acc = 1 - lr / epoch
    report(step=epoch, accuracy=acc, loss=lr / epoch)
    json.dump({"epoch": epoch}, open(ckpt, "w"))
print("started at", start)
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 2},
           "ExperimentSettings": {"max_trials": 50, "pass_interval_s": 0.2}}
    with experiment_service(tmp_path_factory, "exp", cfg) as s:
        yield s


def body(**kw):
    b = {"notebook": make_notebook(TRAIN, params="lr = 0.1\nepochs = 3"), "profile": "cpu", "tenant": "team-a",
         "name": "exp", "space": {"lr": [0.1, 0.4, 0.7, 0.9]}, "objective": {"metric": "accuracy", "mode": "max"},
         "strategy": "asha", "parallelism": 2, "budget": {"parameter": "epochs", "max": 9},
         "pruner": {"min_resource": 1, "reduction_factor": 3}, "seed": 1}
    b.update(kw)
    return b


def test_bad_input_is_4xx(svc):
    s, api = svc.session(), svc.api
    for bad, word in ((body(space={"nope": [1, 2]}), "unknown parameter"),
                      (body(space={"lr": {"low": 1.0, "high": 0.1}}), "inverted"),
                      (body(space={"lr": []}), "empty"),
                      (body(space={"lr": {"low": 0.5, "high": 0.5}}), "empty"),
                      (body(max_trials=51), "max_trials"),
                      (body(budget={"parameter": "nope", "max": 3}), "unknown budget parameter"),
                      (body(strategy="bogus"), "strategy")):
        r = s.post(api + "experiments", json=bad)
        assert r.status_code == 400, (bad["space"], r.status_code, r.text)
        assert word in r.text, r.text
    assert s.get(api + "experiments/999").status_code == 404


def test_asha_prunes_frees_slots_and_resume_continues(svc):
    s, api = svc.session(), svc.api
    r = s.post(api + "experiments", json=body())
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    most = 0
    deadline = time.time() + 240
    while time.time() < deadline:
        e = s.get(api + f"experiments/{eid}").json()
        holding = [t for t in e["trials"] if t["job_state"] in ("admitted", "running")]
        most = max(most, len(holding))
        if e["state"] != "running":
            break
        time.sleep(0.2)
    assert e["state"] == "completed", e
    assert most <= 2, f"{most} trials held slots at once (parallelism 2)"
    assert len(e["trials"]) == 4
    pruned = [t for t in e["trials"] if t["state"] == "pruned"]
    assert pruned, [(t["parameters"], t["state"], t["last_step"]) for t in e["trials"]]
    for t in pruned:
        assert t["stopped_by"] == "rule"
        assert t["last_step"] < 9 and t["metrics"]["accuracy"], t
        # the trial learnt it was pruned at its next report() (the stop marker), not from the cancel: it
        # ended itself within one epoch of the rung the pruner decided at (rungs 1, 3)
        fail = t["failure"] or {}
        got = re.search(r"pruned by the experiment's rule at step (\d+)", fail.get("message") or "")
        assert got and fail.get("class") == "cancelled", t
        rung = int(got.group(1))
        assert rung in (1, 3) and rung <= t["last_step"] <= rung + 1, (rung, t["last_step"], t["metrics"])
        log = s.get(api + f"jobs/{t['job_id']}/logs").text
        assert "stopped itself at the experiment's stop marker" in log, log[-2000:]
        # where a trial's start goes (the runner's startup lines, seconds since its process started)
        assert "startup: papermill imported" in log and "startup: kernel up" in log, log[:2000]
    done = [t for t in e["trials"] if t["state"] == "completed"]
    assert done and all(t["last_step"] == 9 for t in done)
    assert e["best"]["parameters"]["lr"] == min(t["parameters"]["lr"] for t in done)
    assert not e["best"]["provisional"]
    # the metrics of any job
    m = s.get(api + f"jobs/{done[0]['job_id']}/metrics").json()
    assert [p[0] for p in m["metrics"]["loss"]] == list(range(1, 10))

    # resume the pruned trial with more budget: the same job again, from its checkpoint
    t = pruned[0]
    r = s.post(api + f"experiments/{eid}/trials/{t['number']}/resume", json={"budget": 12})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "running"

    def resumed():
        e = s.get(api + f"experiments/{eid}").json()
        tr = e["trials"][t["number"]]
        return tr if tr["state"] == "completed" else None
    tr = wait_for(resumed, 120, what="the resumed trial to complete")
    assert tr["job_id"] == t["job_id"] and tr["attempt"] == 2 and tr["budget"] == 12
    steps = [p[0] for p in tr["metrics"]["accuracy"]]
    assert steps == list(range(1, 13)), steps  # continued after its last step, nothing run twice
    log = s.get(api + f"jobs/{t['job_id']}/logs").text
    assert f"started at {t['last_step']}" in log, log[-2000:]

    # stop: a trial added by a person, stopped by them
    best_lr = s.get(api + f"experiments/{eid}").json()["best"]["parameters"]["lr"]
    r = s.post(api + f"experiments/{eid}/trials", json={"parameters": {"lr": best_lr}})
    assert r.status_code == 201, r.text
    new = r.json()["trials"][-1]
    assert new["origin"] == "user"
    wait_for(lambda: s.get(api + f"jobs/{new['job_id']}/metrics").json()["metrics"], 60, what="first metrics")
    r = s.post(api + f"experiments/{eid}/trials/{new['number']}/stop")
    assert r.status_code == 200, r.text

    def stopped():
        tr = s.get(api + f"experiments/{eid}").json()["trials"][new["number"]]
        return tr if tr["state"] == "stopped" else None
    assert wait_for(stopped, 60, what="the stopped trial")["stopped_by"] == "hub"
    assert s.post(api + f"experiments/{eid}/trials/{new['number']}/stop").status_code == 409


def test_metric_never_reported_is_said(svc):
    s, api = svc.session(), svc.api
    r = s.post(api + "experiments", json=body(objective={"metric": "val_acc", "mode": "max"},
                                               space={"lr": [0.1, 0.2]}, budget={"parameter": "epochs", "max": 4}))
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    e = wait_for(lambda: (lambda e: e if e["state"] != "running" else None)(
        s.get(api + f"experiments/{eid}").json()), 120, what="the experiment to fail")
    assert e["state"] == "failed", e
    assert "'val_acc' was never reported" in e["message"] and "accuracy" in e["message"], e["message"]
