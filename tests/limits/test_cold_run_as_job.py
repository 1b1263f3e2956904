"""The first "Run as job" after a service start answers within a second (benchmarks/cold_run_as_job.py)."""
from __future__ import annotations

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    spec = importlib.util.spec_from_file_location("cold_run_as_job",
                                                  os.path.join(REPO, "benchmarks", "cold_run_as_job.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_as_job_answers_within_a_second_on_a_cold_service(tmp_path):
    """Closes: the first "Run as job" after a service start freezes 20+ s (papermill imported, workers waited for).

    Inspect, profiles and submit, each sent the moment /health first answers. Two fresh starts, and one of
    them must be all under a second: a busy CI machine can slow one start, never make the old path fast
    (papermill's import alone takes seconds)."""
    bench = _bench()
    res = bench.measure(str(tmp_path), runs=2)
    bench.report(res, 1.0)
    best = min(res["cold"], key=lambda c: max(c.values()))
    assert max(best.values()) < 1.0, res["cold"]
