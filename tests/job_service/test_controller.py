"""The controller's loop, in process: no subprocess, no HTTP, no hub.

Real parts: the Controller, the scheduling core, a real SQLite database in tmp_path (migrated by alembic),
rows written the way the API writes them. The executor is ``HeldExecutor``: a real Executor subclass that
runs nothing (like the NoopExecutor) but whose runs end when the test says so, with the outcome the test
picks; its runs live in a dict shared by its instances, as processes outlive a restarted service.
"""
from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from job_runner.controller import Controller
from job_runner.db import (
    ALLOC_ALLOCATED,
    ALLOC_PENDING,
    ALLOC_RELEASED,
    CANCELLED,
    QUEUED,
    Allocation,
    Job,
    JobEvent,
    Lease,
    open_database,
    store_notebooks,
    utcnow,
)
from job_runner.db.ops import transition
from job_runner.db.tenants import seed_tenants
from job_runner.executors.base import FAILED, RUNNING, SUCCEEDED, ExecState, Executor
from job_runner.failures import failure
from job_runner.scheduling import Inventory, ProfileCatalog, Tenant, Workload

TENANTS = [
    {"name": "team-a", "quotas": {"any": {"gpu_milli": 4000}}, "emergency_users": ["erin"], "namespace": "research"},
    {"name": "team-b", "quotas": {"any": {"gpu_milli": 1000, "max_servers_per_user": 1}}},
]
PROFILES = [
    {"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1}},
    {"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 10, "memory_mib": 10}},
]


class HeldExecutor(Executor):
    """Runs nothing; a run ends when the test calls ``end(job_id, state, failure)``."""

    name = "held"

    def __init__(self, runs=None, **kw):
        super().__init__(**kw)
        self.runs = {} if runs is None else runs  # (job id, attempt) -> ExecState
        self.started, self.cancelled, self.reconciled, self.specs = [], [], [], []

    async def start(self, job, assignment):
        self.started.append((job.id, job.attempt, dict(assignment)))
        self.specs.append(job)
        self.runs.setdefault((job.id, job.attempt), ExecState(RUNNING))
        return {"job_id": job.id, "attempt": job.attempt}

    async def poll(self, handle):
        return self.runs[(handle["job_id"], handle["attempt"])]

    async def cancel(self, handle):
        self.cancelled.append(handle["job_id"])
        self.runs[(handle["job_id"], handle["attempt"])] = ExecState(FAILED, failure=failure("cancelled", "stopped"))

    async def adopt(self, job):
        return {"job_id": job.id, "attempt": job.attempt} if (job.id, job.attempt) in self.runs else None

    async def reconcile(self, live):
        self.reconciled.append(set(live))
        return []

    def end(self, job_id, attempt=1, state=SUCCEEDED, fail=None):
        self.runs[(job_id, attempt)] = ExecState(state, failure=fail)


@pytest.fixture()
def env(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/aistack.sqlite")
    seed_tenants(db, [Tenant.from_config(t) for t in TENANTS])
    deployment = SimpleNamespace(
        inventory=Inventory.from_config([{"name": "node1", "cpu_milli": 64000, "memory_mib": 262144, "gpus": 2,
                                          "gpu_model": "A100-40GB"}]),
        profiles=ProfileCatalog.from_config(PROFILES))
    made = []

    def controller(executor=None, **kw):
        ctl = Controller(db, deployment, executor or HeldExecutor(), **kw)
        made.append(ctl)
        return ctl

    yield SimpleNamespace(db=db, deployment=deployment, controller=controller)
    for ctl in made:
        ctl.stop()
    db.dispose()


def submit(db, tenant="team-a", user="alice", profile="gpu-1", priority="normal", **cols) -> int:
    """A queued job row, as POST jobs stores it."""
    request = ProfileCatalog.from_config(PROFILES).get(profile).request.to_dict()
    now = utcnow()
    with db.session() as s:
        row = Job(name="j", user=user, tenant=tenant, profile=profile, priority=priority, state=QUEUED,
                  notebook="{}", parameters={}, request=request, attempt=0, created_at=now, updated_at=now,
                  cancel_requested=0, enqueued=0, retry_on=cols.pop("retry_on", []), **cols)
        s.add(row)
        s.flush()
        s.add(JobEvent(job_id=row.id, at=now, to_state=QUEUED, attempt=0, message="submitted"))
        return row.id


def job(db, job_id):
    with db.read() as s:
        row = s.get(Job, job_id)
        return SimpleNamespace(state=row.state, attempt=row.attempt, assignment=row.assignment, failure=row.failure,
                               events=[e.to_state for e in row.events])


def run(coro):
    return asyncio.run(coro)


def test_admission_within_capacity_and_the_rest_waits_with_its_position(env):
    ctl = env.controller()
    ids = [submit(env.db) for _ in range(3)]

    async def main():
        await ctl.tick()
        return ctl.pending_info(ids[2])

    info = run(main())
    states = [job(env.db, i) for i in ids]
    assert [s.state for s in states] == ["running", "running", "queued"]
    assert states[0].events == ["queued", "admitted", "running"] and states[0].attempt == 1
    assert sorted(s.assignment["gpu_indices"][0] for s in states[:2]) == [0, 1]
    assert info.position == 1 and info.reason == "capacity"
    assert [s[0] for s in ctl.executor.started] == ids[:2]
    # the executor gets the stored assignment (it binds the slice itself) and the tenant's namespace
    assert ctl.executor.started[0][2] == states[0].assignment
    assert ctl.executor.specs[0].namespace == "research"


def test_quota_holds_jobs_back_and_a_finish_frees_the_slice(env):
    ctl = env.controller()
    a, b = submit(env.db, tenant="team-b", user="dave"), submit(env.db, tenant="team-b", user="dave")

    async def main():
        await ctl.tick()
        assert ctl.pending_info(b).reason == "quota"
        ctl.executor.end(a)
        await ctl.tick()  # a succeeds, its slice is free ...
        await ctl.tick()  # ... and b is admitted

    run(main())
    assert job(env.db, a).state == "succeeded" and job(env.db, b).state == "running"
    assert ctl.pending_info(b) is None


def test_a_failed_attempt_is_retried_when_its_policy_allows(env):
    ctl = env.controller()
    j = submit(env.db, max_retries=1, retry_on=["infrastructure"])
    other = submit(env.db, max_retries=0, retry_on=["infrastructure"])

    async def main():
        await ctl.tick()
        for job_id in (j, other):
            ctl.executor.end(job_id, 1, FAILED, failure("infrastructure", "node lost"))
        await ctl.tick()  # both fail; j goes back to the queue
        await ctl.tick()  # j's attempt 2 is admitted
        ctl.executor.end(j, 2)
        await ctl.tick()

    run(main())
    r = job(env.db, j)
    assert r.state == "succeeded" and r.attempt == 2
    assert r.events == ["queued", "admitted", "running", "queued", "admitted", "running", "succeeded"]
    assert job(env.db, other).state == "failed" and job(env.db, other).failure["class"] == "infrastructure"


def test_cancel_of_a_running_and_of_a_queued_job(env):
    ctl = env.controller()
    ids = [submit(env.db) for _ in range(3)]

    async def main():
        await ctl.tick()
        with env.db.session() as s:  # what POST jobs/{id}/cancel writes
            s.execute(update(Job).where(Job.id == ids[0]).values(cancel_requested=1))
            transition(s, ids[2], QUEUED, CANCELLED, cancel_requested=1, finished_at=utcnow(),
                       failure=failure("cancelled", "cancelled while queued"))
        await ctl.tick()

    run(main())
    assert ctl.executor.cancelled == [ids[0]]
    assert job(env.db, ids[0]).state == "cancelled" and job(env.db, ids[0]).failure["class"] == "cancelled"
    assert job(env.db, ids[2]).state == "cancelled"
    assert ctl.pending_info(ids[2]) is None
    # the freed GPU is free for the next one
    nxt = submit(env.db)
    run(ctl.tick())
    assert job(env.db, nxt).state == "running"


def test_emergency_work_preempts_a_normal_job_which_is_queued_again(env):
    ctl = env.controller(preemption=True)
    normal = [submit(env.db) for _ in range(2)]

    async def main():
        await ctl.tick()
        urgent = submit(env.db, user="erin", priority="emergency")
        await ctl.tick()
        return urgent

    urgent = run(main())
    assert job(env.db, urgent).state == "running"
    states = sorted(job(env.db, i).state for i in normal)
    assert states == ["queued", "running"]
    victim = next(i for i in normal if job(env.db, i).state == "queued")
    assert ctl.executor.cancelled == [victim]
    assert job(env.db, victim).events[-1] == "queued"


def test_a_new_leader_adopts_live_runs_and_fails_lost_ones(env):
    runs = {}
    first = env.controller(HeldExecutor(runs), replica_id="first")
    ids = [submit(env.db) for _ in range(2)]
    run(first.tick())
    assert first.is_leader
    del runs[(ids[1], 1)]  # that run died with the machine
    first.stop()  # gives the lease back
    second = env.controller(HeldExecutor(runs), replica_id="second")
    queued = submit(env.db)

    async def main():
        await second.tick()

    run(main())
    assert second.is_leader
    assert job(env.db, ids[0]).state == "running"
    lost = job(env.db, ids[1])
    assert lost.state == "failed" and "lost" in lost.failure["message"]
    assert job(env.db, queued).state == "running"  # the freed GPU went to the queued job
    assert second.executor.started == [(queued, 1, job(env.db, queued).assignment)]  # nothing started twice


def test_leadership_moves_when_the_lease_runs_out_and_the_old_leader_steps_down(env):
    runs = {}
    first = env.controller(HeldExecutor(runs), replica_id="first", lease_ttl_s=30)
    second = env.controller(HeldExecutor(runs), replica_id="second", lease_ttl_s=30)
    j = submit(env.db)

    async def main():
        await first.tick()
        await second.tick()
        assert first.is_leader and not second.is_leader
        with env.db.session() as s:  # the first one paused past its lease
            s.execute(update(Lease).values(expires_at=0))
        await second.tick()
        await first.tick()

    run(main())
    assert second.is_leader and not first.is_leader
    assert job(env.db, j).state == "running" and len(first.executor.started) == 1
    assert second.executor.started == []  # adopted, not started again


def test_server_allocations_take_slices_and_release_them(env):
    ctl = env.controller()

    def alloc(user="dave", tenant="team-b"):
        with env.db.session() as s:
            row = Allocation(user=user, tenant=tenant, profile="gpu-1", server_name="", priority="normal",
                             state=ALLOC_PENDING, request={"kind": "whole", "gpus": 1}, created_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def state(alloc_id):
        with env.db.read() as s:
            r = s.get(Allocation, alloc_id)
            return r.state, r.assignment

    w = Workload("new", "team-b", "dave", "server", "normal", ProfileCatalog.from_config(PROFILES).get("gpu-1").request, 0.0)
    assert ctl.check(w).ok
    first = alloc()
    jobs = [submit(env.db) for _ in range(2)]

    async def main():
        await ctl.tick()
        st, assignment = state(first)
        assert st == ALLOC_ALLOCATED and assignment["gpu_indices"]
        # dave may hold one server: the read model says so (the API's check), without the live scheduler
        assert ctl.check(w).reason == "server_limit"
        with env.db.session() as s:  # DELETE allocations/{id}
            s.execute(update(Allocation).where(Allocation.id == first).values(state=ALLOC_RELEASED))
        await ctl.tick()
        await ctl.tick()

    run(main())
    assert [job(env.db, i).state for i in jobs] == ["running", "running"]
    assert ctl.check(w).ok


def test_wait_for_pass_and_reconcile_through_the_running_loop(env):
    ctl = env.controller(tick_interval_s=30, reconcile_interval_s=3600)
    j = submit(env.db)

    async def main():
        task = asyncio.create_task(ctl.run_forever())
        assert await ctl.wait_for_pass(10)  # the first pass
        k = submit(env.db)
        assert await ctl.wait_for_pass(10)  # woken at once, not after tick_interval_s
        ctl.stop()
        await asyncio.wait_for(task, 10)
        return k

    k = run(main())
    assert job(env.db, j).state == job(env.db, k).state == "running"
    assert ctl.executor.reconciled[0] == {(j, 1)}  # asked once with the live attempts, then not for an hour
    assert len(ctl.executor.reconciled) == 1


def test_a_big_pass_runs_off_the_event_loop(env):
    """10,000 pending jobs: the pass (take-in, the core's decision, the writes) runs in the controller's
    worker thread; the event loop keeps answering meanwhile."""
    ctl = env.controller(max_admissions_per_tick=500)
    now = utcnow()
    with env.db.session() as s:
        sha = store_notebooks(s, ["{}"])[0]  # a bulk insert stores its one notebook itself
        s.execute(Job.__table__.insert(), [
            {"name": "j", "user": "alice", "tenant": "team-a", "profile": "cpu", "priority": "normal",
             "state": QUEUED, "notebook_sha": sha, "parameters": {}, "request": {"kind": "cpu", "cpu_milli": 10,
             "memory_mib": 10}, "attempt": 0, "created_at": now, "updated_at": now, "cancel_requested": 0,
             "enqueued": 0, "retry_on": [], "max_retries": 0} for _ in range(10_000)])
    threads = set()
    original = ctl._db_decide

    def decide():
        threads.add(threading.current_thread().name)
        return original()

    ctl._db_decide = decide

    async def main():
        gaps, stop = [], False

        async def beat():
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.005)
                t = time.perf_counter()
                gaps.append(t - last)
                last = t

        b = asyncio.create_task(beat())
        t0 = time.perf_counter()
        await ctl.tick()
        took = time.perf_counter() - t0
        stop = True
        await b
        return took, max(gaps)

    took, worst = run(main())
    assert threads and all(n.startswith("controller") for n in threads)
    with env.db.read() as s:
        assert s.query(Job).filter(Job.state == "running").count() == 500
    print(f"10k-pending pass: {took:.2f} s; longest event-loop stall meanwhile: {worst * 1000:.0f} ms")
    # A pass on the loop would stall it for the whole pass. Off the loop the heartbeat still waits while the
    # worker holds the GIL inside long C loops (SQLAlchemy's compiled row processing with json.loads per
    # row, numpy in the placement): measured 0.2-0.44 s of a 1.3-2.0 s pass on 2 loaded cores (the CI run
    # of stop 19 had 0.34 of 1.34 s). Half the pass separates the two cases with margin on either side.
    assert worst < max(0.25, took / 2), (took, worst)
