"""Units of experiments on real parts: report() writing a real file, the stdout parser, the space checks,
ingest into a real SQLite database (migrated by alembic), Optuna's ASHA deciding at its rungs."""
from __future__ import annotations

import json
import time

import pytest

from job_runner.db import Job, open_database, store_notebooks
from job_runner.experiments import ingest
from job_runner.experiments import space as sp
from job_runner.experiments.study import StudyDriver, rungs
from job_runner.report import Reporter


def test_report_batches_whole_lines_and_is_cheap(tmp_path):
    path = tmp_path / "metrics.jsonl"
    r = Reporter(str(path), flush_every_s=0.2)
    n = 20000
    t0 = time.perf_counter()
    for i in range(n):
        r.report(step=i, accuracy=i / n, loss=1.0)
    per_call = (time.perf_counter() - t0) / n
    r.flush()
    lines = path.read_bytes().splitlines()
    assert len(lines) == n and json.loads(lines[-1])["m"] == {"accuracy": (n - 1) / n, "loss": 1.0}
    assert per_call < 1e-3, f"report() took {per_call * 1e6:.0f} us per call"
    r.report(step=1, bad=float("nan"))  # not finite: left out, nothing written
    r.flush()
    assert len(path.read_bytes().splitlines()) == n
    with pytest.raises(ValueError):
        r.report(step=1, acc="high")


def test_report_flushes_by_itself_while_the_notebook_computes(tmp_path):
    path = tmp_path / "m.jsonl"
    r = Reporter(str(path), flush_every_s=0.1)
    r.report(step=1, acc=0.5)
    r.report(step=2, acc=0.6)  # within flush_every_s: batched, then written by the timer thread
    deadline = time.time() + 5
    while time.time() < deadline and len(path.read_bytes().splitlines()) < 2 if path.exists() else True:
        time.sleep(0.02)
    assert len(path.read_bytes().splitlines()) == 2


def test_stdout_lines_katib_style():
    state = {}
    pts = ingest.parse_stdout("epoch=1 accuracy=0.5 loss=2\nnoise x=3\naccu", {"accuracy", "loss"}, state)
    assert sorted(pts) == [(1, "accuracy", 0.5, None), (1, "loss", 2.0, None)]
    pts = ingest.parse_stdout("racy=0.7\naccuracy=0.8\n", {"accuracy"}, state)  # the split line joined
    assert pts == [(2, "accuracy", 0.7, None), (3, "accuracy", 0.8, None)] or pts == [
        (2, "accuracy", 0.8, None)], pts


def test_space_errors():
    with pytest.raises(sp.SpaceError, match="unknown parameter"):
        sp.distributions({"x": [1]}, known={"lr"})
    with pytest.raises(sp.SpaceError, match="inverted"):
        sp.distributions({"lr": {"low": 2, "high": 1}})
    with pytest.raises(sp.SpaceError, match="empty"):
        sp.distributions({"lr": []})
    with pytest.raises(sp.SpaceError, match="log range"):
        sp.distributions({"lr": {"low": 0, "high": 1, "log": True}})
    d = sp.distributions({"lr": [0.1, 0.2, 0.3], "depth": {"low": 1, "high": 9, "step": 4}})
    assert sp.grid_size(sp.grid(d)) == 9
    with pytest.raises(sp.SpaceError, match="grid"):
        sp.grid(sp.distributions({"lr": {"low": 0.1, "high": 1.0}}))


def test_asha_decides_at_rungs_only():
    spec = {"space": {"lr": [0.1, 0.4, 0.7, 0.9]}, "objective": {"metric": "acc", "mode": "max"},
            "strategy": "asha", "max_trials": 4, "budget": {"parameter": "epochs", "max": 27},
            "pruner": {"min_resource": 1, "reduction_factor": 3}, "seed": 0}
    assert rungs(spec) == [1, 3, 9]
    d = StudyDriver(spec, sp.distributions(spec["space"]))
    for i, lr in enumerate([0.1, 0.4, 0.7, 0.9]):
        d.add(i, {"lr": lr})
    assert not d.feed(0, [(1, 0.5)]) and not d.feed(1, [(1, 0.6)])  # each the best so far at rung 1
    assert d.feed(2, [(1, 0.3)])  # rung 1 with 3 competitors: only the top third goes on
    assert not d.feed(3, [(1, 0.95)])  # the best so far
    assert not d.feed(1, [(2, 0.1)])  # step 2 is no rung: never judged there


def test_asha_gives_no_verdict_at_the_budgets_last_step():
    """Optuna's pruner has a rung at min_resource * eta**3 = 27, the budget's end: a trial judged there has
    done its whole budget, so the driver does not stop it (it would be a finished run called pruned)."""
    def driver(budget_max):
        spec = {"space": {"lr": [0.1, 0.4, 0.7]}, "objective": {"metric": "acc", "mode": "max"},
                "strategy": "asha", "max_trials": 3, "budget": {"parameter": "epochs", "max": budget_max},
                "pruner": {"min_resource": 1, "reduction_factor": 3}, "seed": 0}
        d = StudyDriver(spec, sp.distributions(spec["space"]))
        for i, lr in enumerate([0.1, 0.4, 0.7]):
            d.add(i, {"lr": lr})
        for i in (0, 1, 2):  # each the best so far at rungs 1, 3 and 9
            assert not d.feed(i, [(s, 0.5 + 0.1 * i) for s in (1, 3, 9)])
        for i in (1, 2):
            assert not d.feed(i, [(27, 0.9 + 0.01 * i)])
        return d.feed(0, [(27, 0.6)])  # trial 0 last to step 27, the worst of three there

    assert driver(27) is False  # step 27 is the budget's end: no verdict
    assert driver(81) is True  # with a longer budget step 27 is a rung like the others, and trial 0 is stopped


def test_ingest_rate_on_sqlite(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    with db.session() as s:
        sha = store_notebooks(s, ["{}"])[0]
        job = Job(name="j", user="u", tenant="t", profile="cpu", notebook_sha=sha, state="running")
        s.add(job)
        s.flush()
        jid = job.id
    lines = b"".join(json.dumps({"step": i, "t": 0, "m": {"acc": 0.1, "loss": 0.2}}).encode() + b"\n"
                     for i in range(25000))
    t0 = time.perf_counter()
    n = ingest.ingest(db, [(jid, 1, ingest.parse_jsonl(lines), "file", len(lines), None)])
    rate = n / (time.perf_counter() - t0)
    assert n == 50000
    assert rate >= 5000, f"{rate:.0f} points/s"
    with db.read() as s:
        got = ingest.series(s, [jid], ["acc"])
    assert len(got[jid]["acc"]) == 25000
    assert ingest.cursors(db, [(jid, 1, "file")])[(jid, 1, "file")][0] == len(lines)


def test_report_sees_the_stop_marker_quickly_and_cheaply(tmp_path):
    """report() with a stop marker to watch stays well under 1 ms per call, raises TrialStopped at the first
    call after the marker appears (before recording that point), and should_stop() says so without raising.
    The marker is written the way the service writes it (job_runner.experiments.marker.write_stop)."""
    from job_runner.experiments import marker
    from job_runner.report import TrialStopped

    class Folder:  # what marker.* needs of an executor: where an attempt's run files are
        def attempt_dir(self, job_id, attempt):
            return str(tmp_path)

    path, stop = tmp_path / marker.METRICS_FILE, tmp_path / marker.STOP_FILE
    r = Reporter(str(path), stop_path=str(stop), check_every_s=0.0)  # the worst case: a stat() every call
    n = 20000
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        r.report(step=i, accuracy=0.5)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 1e-3, f"report() with the stop check took {per_call * 1e6:.0f} us per call"
    assert not r.should_stop()
    assert marker.write_stop(Folder(), 7, 1, "pruned by the experiment's rule")
    assert marker.write_stop(Folder(), 7, 1, "again")  # already there: kept, not overwritten
    assert stop.read_text() == "pruned by the experiment's rule"
    with pytest.raises(TrialStopped, match="pruned by the experiment's rule"):
        r.report(step=n + 1, accuracy=0.9)
    r.flush()
    steps = [json.loads(x)["step"] for x in path.read_bytes().splitlines()]
    assert steps[-1] == n and len(steps) == n, "the point after the stop was recorded"
    assert r.should_stop()
    assert marker.metrics_size(Folder(), 7, 1) == path.stat().st_size

    # throttled (the default check_every_s): the marker is seen within one check interval, never missed
    stop2 = tmp_path / "stop2"
    r2 = Reporter(str(tmp_path / "m2.jsonl"), stop_path=str(stop2), check_every_s=0.02)
    r2.report(step=1, accuracy=0.1)
    stop2.write_text("stopped by hub")
    deadline = time.monotonic() + 5
    with pytest.raises(TrialStopped, match="stopped by hub"):
        while time.monotonic() < deadline:
            r2.report(accuracy=0.2)
    r3 = Reporter(None, stop_path=str(stop2), raise_on_stop=False)  # asks should_stop() itself
    r3.report(step=1, accuracy=0.3)
    assert r3.should_stop() and r3.points()[-1]["step"] == 1
