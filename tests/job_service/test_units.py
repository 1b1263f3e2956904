"""Parameters, failure policy, migrations (SQLite and PostgreSQL), executor protocol (the slice's binding:
tests/binding)."""
from __future__ import annotations

import asyncio
import json
import os
import time

import nbformat
import pytest
from sqlalchemy import inspect as sa_inspect

from job_runner.db import downgrade, open_database, upgrade
from job_runner.executors.base import JobSpec
from job_runner.executors.local import LocalExecutor
from job_runner.failures import should_retry
from job_runner.params import ParameterError, expand_sweep, inspect_parameters, validate_parameters

from .helpers import make_notebook

NB = nbformat.from_dict(make_notebook("pass", params=(
    "epochs: int = 3\nlr = 0.01  # learning rate\nname = 'x'\nuse_gpu = True\nlayers = [1, 2]\n"
    "maybe: Optional[int] = None\nanything = some_function()")))


def test_parameters_are_read_with_types_defaults_and_help():
    p = inspect_parameters(NB)
    assert {k: v["type"] for k, v in p.items()} == {
        "epochs": "int", "lr": "float", "name": "str", "use_gpu": "bool", "layers": "list",
        "maybe": "Optional[int]", "anything": "None"}
    assert p["lr"]["help"] == "learning rate" and p["epochs"]["default"] == "3"


@pytest.mark.parametrize("values,ok", [
    ({"epochs": 5}, True), ({"epochs": 5.5}, False), ({"epochs": True}, False), ({"epochs": "5"}, False),
    ({"lr": 1}, True), ({"lr": "high"}, False), ({"use_gpu": 1}, False), ({"use_gpu": False}, True),
    ({"layers": [3]}, True), ({"layers": {"a": 1}}, False), ({"maybe": None}, True), ({"maybe": 2}, True),
    ({"maybe": "2"}, False), ({"anything": {"free": "form"}}, True), ({"unknown": 1}, False),
])
def test_parameter_validation(values, ok):
    declared = inspect_parameters(NB)
    if ok:
        out = validate_parameters(declared, values)
        assert set(out) == set(values)
        if "lr" in values:
            assert isinstance(out["lr"], float)
    else:
        with pytest.raises(ParameterError):
            validate_parameters(declared, values)


def test_sweep_is_a_validated_grid():
    declared = inspect_parameters(NB)
    combos = expand_sweep(declared, {"name": "base"}, {"epochs": [1, 2], "lr": [0.1, 0.2, 0.3]})
    assert len(combos) == 6 and all(c["name"] == "base" for c in combos)
    with pytest.raises(ParameterError):
        expand_sweep(declared, {}, {"epochs": [1, "two"]})
    with pytest.raises(ParameterError):
        expand_sweep(declared, {}, {"epochs": list(range(300))})
    with pytest.raises(ParameterError):
        validate_parameters({}, {"a": 1})  # no parameters cell: no parameters


def test_retry_policy():
    kd = {"class": "kernel_died"}
    assert should_retry(kd, attempt=1, max_retries=1, retry_on=["kernel_died"])
    assert not should_retry(kd, attempt=2, max_retries=1, retry_on=["kernel_died"])
    assert not should_retry({"class": "cell_error"}, 1, 3, ["kernel_died"])
    assert not should_retry({"class": "cancelled"}, 1, 3, ["cancelled"])


def test_a_run_the_platform_lost_is_restarted_within_the_platforms_budget_whatever_max_retries():
    evicted = {"class": "infrastructure", "reason": "Evicted", "message": "evicted by a drain"}
    for reason in ("PodDeleted", "Evicted", "NodeLost"):
        lost = dict(evicted, reason=reason)
        assert should_retry(lost, attempt=1, max_retries=0, retry_on=[], lost_run_restarts=2)
        assert should_retry(lost, attempt=2, max_retries=0, retry_on=["cell_error"], lost_run_restarts=2)
        assert not should_retry(lost, attempt=3, max_retries=0, retry_on=[], lost_run_restarts=2)
        assert not should_retry(lost, attempt=1, max_retries=0, retry_on=[], lost_run_restarts=0)
    # the user's own failures, other infrastructure trouble and the platform's own stop are not "lost"
    for other in ({"class": "infrastructure", "reason": "ImagePullBackOff"}, {"class": "infrastructure"},
                  {"class": "cell_error", "reason": "Evicted"}, {"class": "out_of_memory", "reason": "OOMKilled"},
                  {"class": "cancelled", "reason": "PodDeleted"}):
        assert not should_retry(other, attempt=1, max_retries=0, retry_on=["infrastructure"], lost_run_restarts=2), other


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrations_up_down_up(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path}/m.sqlite" if backend == "sqlite" else \
        request.getfixturevalue("postgres").create_db("migrations")
    db = open_database(url)
    tables = set(sa_inspect(db.engine).get_table_names())
    assert {"tenants", "jobs", "job_events", "allocations", "leases", "alembic_version"} <= tables
    downgrade(db.engine, db.url, "base")
    assert set(sa_inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade(db.engine, db.url, "head")
    assert "jobs" in sa_inspect(db.engine).get_table_names()
    db.dispose()


def test_a_launch_marker_cut_short_by_a_kill_is_a_lost_attempt_not_a_job_without_handle(tmp_path):
    """Closes: a service SIGKILLed while writing an attempt's launch marker left an empty marker; the restarted
    service's start() then answered no handle and the job stayed 'running' for ever (found by the random-kill
    test). Now the attempt has a handle without pid, which poll reports lost after lost_after_s (then retried)."""
    async def main():
        ex = LocalExecutor(jobs_dir=str(tmp_path), lost_after_s=0.0)
        spec = JobSpec(id=8, name="t", user="u", tenant="t", profile="p", attempt=1, notebook=json.dumps(make_notebook("1")))
        os.makedirs(ex.job_dir(8), exist_ok=True)
        open(ex.launch_path(8, 1), "w").close()  # created (O_EXCL), killed before its JSON was written
        handle = await ex.start(spec, {"node": "n", "gpu_indices": [0], "gpu_milli": 1000})
        assert handle is not None and "pid" not in handle and handle["launched_at"] > 0, handle
        st = await ex.poll(handle)
        assert st.state == "failed" and st.failure["class"] == "infrastructure", st
    asyncio.run(main())


def test_local_executor_start_is_idempotent_and_adopt_finds_the_run(tmp_path):
    """Real papermill: one attempt, started twice (as after a crash between start and the DB write)."""
    async def main():
        ex = LocalExecutor(jobs_dir=str(tmp_path))
        nb = make_notebook("import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['AISTACK_JOB_ATTEMPT'])",
                           "time.sleep(2)")
        spec = JobSpec(id=7, name="t", user="u", tenant="t", profile="p", attempt=1, notebook=json.dumps(nb))
        # the executor binds the stored assignment itself (job_runner.binding.local.local_env)
        assignment = {"node": "n", "gpu_indices": [3], "gpu_milli": 1000}
        h1 = await ex.start(spec, assignment)
        h2 = await ex.start(spec, assignment)
        assert h1["pid"] == h2["pid"]
        other = LocalExecutor(jobs_dir=str(tmp_path))  # a restarted service
        h3 = await other.adopt(spec)
        assert h3 and h3["pid"] == h1["pid"]
        deadline = time.time() + 90
        while time.time() < deadline:
            st = await other.poll(h3)
            if st.final:
                break
            await asyncio.sleep(0.3)
        assert st.state == "succeeded", st
        assert st.progress["cells_done"] == st.progress["cells_total"] == 2
        out = await other.read_output(spec)
        assert "3 1" in out
        logs, _ = await other.read_logs(spec)
        assert b"Executing Cell 2" in logs
        spec.attempt = 2
        assert await other.adopt(spec) is None  # attempt 2 never launched
    asyncio.run(main())
