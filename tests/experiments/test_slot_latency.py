"""A freed slot is used at once, not at the next periodic pass (issue 13; docs/experiments.md, "Where a
trial's slot time goes").

The real service (LocalExecutor, papermill kernels, SQLite) with its periodic passes slowed down (the
controller's every 30 s, the experiments pass every 20 s), so that only the event-driven paths can be fast:
- a job queued behind its tenant's quota is admitted as soon as a job holding that quota ends (the
  controller runs its next pass at once when a pass freed slices; before, the pass that saw the end had
  already admitted, and the queued job waited for the next tick);
- an experiment's next trial is queued as soon as its previous trial's job is final (the experiments pass
  looks for watched trials whose jobs ended, not only at its interval).
The bounds (3 s) are a tenth of the slowed intervals: without the event-driven paths the waits are the
intervals (up to 30 s / 20 s), and two gaps in a row both landing near a periodic pass by chance is ~1 %.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.experiments.conftest import experiment_service
from tests.job_service.helpers import make_notebook, wait_for

BOUND_S = 3.0


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    cfg = {"Controller": {"tick_interval_s": 30, "lease_ttl_s": 300}, "LocalExecutor": {"kill_grace_s": 2},
           "ExperimentSettings": {"pass_interval_s": 20}}
    with experiment_service(tmp_path_factory, "slots", cfg) as s:
        yield s


def test_a_job_waiting_for_quota_is_admitted_when_one_ends(svc):
    s, api = svc.session(), svc.api
    # team-a may hold 2 GPUs: the third 1-GPU job waits for one of the first two to end
    nb = make_notebook("import time\ntime.sleep(secs)", params="secs = 1")
    ids = []
    for secs in (1, 4, 1):
        r = s.post(api + "jobs", json={"notebook": nb, "profile": "gpu-1", "tenant": "team-a",
                                       "parameters": {"secs": secs}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    def done():
        jobs = [s.get(api + f"jobs/{i}").json() for i in ids]
        return jobs if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs) else None
    first, second, third = wait_for(done, 120, what="the three jobs")
    assert [j["state"] for j in (first, second, third)] == ["succeeded"] * 3, [j["failure"] for j in (first, second, third)]
    # it really waited for the quota: admitted only after the first job ended
    assert epoch(third["admitted_at"]) >= epoch(first["finished_at"]), (first, third)
    gap = epoch(third["admitted_at"]) - epoch(first["finished_at"])
    assert gap < BOUND_S, f"admitted {gap:.2f} s after the slot was freed (tick interval 30 s)"


TRAIN = """
from job_runner import report
for epoch in range(1, epochs + 1):
    report(step=epoch, accuracy=lr * epoch)
"""


def test_the_next_trial_is_queued_when_the_previous_one_ends(svc):
    s, api = svc.session(), svc.api
    body = {"notebook": make_notebook(TRAIN, params="lr = 0.1\nepochs = 2"), "profile": "cpu",
            "tenant": "team-a", "name": "slots", "space": {"lr": [0.1, 0.2, 0.3]},
            "objective": {"metric": "accuracy", "mode": "max"}, "strategy": "grid", "parallelism": 1}
    r = s.post(api + "experiments", json=body)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]

    def finished():
        e = s.get(api + f"experiments/{eid}").json()
        return e if e["state"] != "running" else None
    e = wait_for(finished, 180, what="the experiment")
    assert e["state"] == "completed", e
    jobs = sorted((s.get(api + f"jobs/{t['job_id']}").json() for t in e["trials"]), key=lambda j: j["id"])
    assert len(jobs) == 3 and all(j["state"] == "succeeded" for j in jobs), [j["state"] for j in jobs]
    gaps = [epoch(nxt["created_at"]) - epoch(prev["finished_at"]) for prev, nxt in zip(jobs, jobs[1:])]
    assert all(0 <= g < BOUND_S for g in gaps), f"next trials queued {gaps} s after the previous ended (pass 20 s)"
