"""Scheduling survives bad state: a stored placement the inventory no longer has, a pass that fails.

Real parts: the Controller and the scheduling core over a real SQLite database (alembic-migrated), the
NoopExecutor (it runs nothing: no GPU here), and in the second test the real service process
(``python -m aistack_hub.service``) answering /health over HTTP. The "restart with a smaller inventory" is
exactly that: rows written while the pool had 4 GPUs, then a controller/service on 2.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from types import SimpleNamespace

import psutil
import requests
import yaml

from job_runner.controller import Controller
from job_runner.db import ALLOC_ALLOCATED, ALLOC_RELEASED, RUNNING, Allocation, Job, JobEvent, open_database, utcnow
from job_runner.db.tenants import seed_tenants
from job_runner.executors.noop import NoopExecutor
from job_runner.scheduling import Inventory, ProfileCatalog, Tenant
from tests.job_service.helpers import DEPLOYMENT, SERVICE_TOKEN, ServiceProcess

TENANTS = [{"name": "team-a", "quotas": {"any": {"gpu_milli": 8000}}}]
PROFILES = [{"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1}},
            {"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 10, "memory_mib": 10}}]
WHOLE = {"kind": "whole", "gpus": 1}


def two_gpus():
    return Inventory.from_config([{"name": "node1", "cpu_milli": 64000, "memory_mib": 262144, "gpus": 2,
                                   "gpu_model": "A100-40GB"}])


def stored_running(db, gpu: int, kind: str) -> int:
    """A running job or an allocated server slice on ``node1`` GPU ``gpu``, as an earlier service wrote it."""
    now = utcnow()
    asg = {"node": "node1", "gpu_indices": [gpu], "gpu_milli": 1000}
    with db.session() as s:
        if kind == "job":
            row = Job(name="j", user="alice", tenant="team-a", profile="gpu-1", priority="normal", state=RUNNING,
                      notebook="{}", parameters={}, request=WHOLE, attempt=1, created_at=now, updated_at=now,
                      cancel_requested=0, enqueued=1, retry_on=[], assignment=asg,
                      handle={"job_id": 0, "attempt": 1, "started": time.time()}, started_at=now)
        else:
            row = Allocation(user="bob", tenant="team-a", profile="gpu-1", server_name=f"s{gpu}", state=ALLOC_ALLOCATED,
                             request=WHOLE, assignment=asg, created_at=now, allocated_at=now)
        s.add(row)
        s.flush()
        return row.id


def test_a_placement_gone_from_the_inventory_is_requeued_or_released_and_the_pass_goes_on(tmp_path):
    """Closes: one stale placement (restart with an inventory lacking a GPU a running workload sits on) made
    every scheduling pass fail."""
    db = open_database(f"sqlite:///{tmp_path}/aistack.sqlite")
    seed_tenants(db, [Tenant.from_config(t) for t in TENANTS])
    kept = stored_running(db, 0, "server")  # GPU 0 exists after the restart
    gone_server = stored_running(db, 3, "server")  # GPU 3 does not
    gone_job = stored_running(db, 2, "job")
    deployment = SimpleNamespace(inventory=two_gpus(), profiles=ProfileCatalog.from_config(PROFILES))
    ctl = Controller(db, deployment, NoopExecutor(duration_s=3600))

    async def main():
        await ctl.tick()
        await ctl.tick()

    try:
        asyncio.run(main())
        assert ctl.failing is None and ctl.ticks == 2, ctl.failing
        with db.read() as s:
            a_kept, a_gone = s.get(Allocation, kept), s.get(Allocation, gone_server)
            assert a_kept.state == ALLOC_ALLOCATED and a_kept.release_reason is None
            assert a_gone.state == ALLOC_RELEASED
            assert "placement gone" in a_gone.release_reason and "no GPU 3" in a_gone.release_reason, a_gone.release_reason
            job = s.get(Job, gone_job)
            job = SimpleNamespace(state=job.state, assignment=job.assignment)
            events = [(e.to_state, e.message or "") for e in
                      s.query(JobEvent).filter(JobEvent.job_id == gone_job).order_by(JobEvent.id)]
        # the job was queued again with the reason, then admitted on the GPU that is left (GPU 0 is the kept
        # server's) and runs
        assert any(st == "queued" and "placement is gone" in msg and "no GPU 2" in msg for st, msg in events), events
        assert job.state == RUNNING and job.assignment["gpu_indices"] == [1], (job.state, job.assignment, events)
        assert ctl.scheduler.consistent()
        assert set(ctl.scheduler.running) == {f"server-{kept}", f"job-{gone_job}"}
    finally:
        ctl.stop()
        db.dispose()


def _get(url, token=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=10)


def test_health_reports_a_failing_loop_until_a_pass_succeeds_and_needs_a_token(tmp_path):
    """Closes: /health said ok while every pass failed; /metrics and /health were readable without a token."""
    data = tmp_path / "svc"
    data.mkdir()
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(yaml.safe_dump(DEPLOYMENT))
    db_path = data / "aistack.sqlite"
    svc = ServiceProcess(str(data), f"sqlite:///{db_path}", str(deployment),
                         config={"Controller": {"tick_interval_s": 0.2},
                                 "AIStackService": {"metrics_token": "scrape-secret-0123456789",
                                                    "executor_class": "job_runner.executors.noop.NoopExecutor"}})
    svc.start()
    try:
        for path in ("health", "metrics"):
            assert _get(svc.url + path).status_code == 401
            assert _get(svc.url + path, "not-a-valid-token").status_code == 403
        assert _get(svc.url + "health", SERVICE_TOKEN).json()["ok"] is True
        scraped = _get(svc.url + "metrics", "scrape-secret-0123456789")
        assert scraped.status_code == 200 and "aistack_scheduler_pass_failures_total 0.0" in scraped.text

        # A real fault under the loop: the tenants table disappears (every pass reads it first).
        con = sqlite3.connect(db_path, timeout=30)
        con.execute("ALTER TABLE tenants RENAME TO tenants_away")
        con.commit()
        deadline = time.monotonic() + 30
        while (r := _get(svc.url + "health", SERVICE_TOKEN)).status_code != 503:
            assert time.monotonic() < deadline, f"/health never reported the failing loop: {r.text}\n{svc.log_tail()}"
            time.sleep(0.2)
        body = r.json()
        assert body["ok"] is False and "tenants" in body["failing"]["reason"] and body["failing"]["failures"] >= 1
        assert body["error"] == "scheduling_failing"
        metrics = _get(svc.url + "metrics", SERVICE_TOKEN).text
        assert "aistack_scheduler_pass_failures_total 0.0" not in metrics

        con.execute("ALTER TABLE tenants_away RENAME TO tenants")
        con.commit()
        con.close()
        deadline = time.monotonic() + 30
        while (r := _get(svc.url + "health", SERVICE_TOKEN)).status_code != 200:
            assert time.monotonic() < deadline, f"/health stayed failing: {r.text}\n{svc.log_tail()}"
            time.sleep(0.2)
        assert r.json()["ok"] is True and r.json()["failing"] is None
    finally:
        children = psutil.Process(svc.proc.pid).children(recursive=True) if svc.proc.poll() is None else []
        svc.stop()
        # its notebook workers and multiprocessing's resource tracker leave after it (bounded wait)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"left running after the service stopped: {alive}"
