"""Prometheus metrics of the job system, updated by the controller (served by the aistack service at
/services/aistack/metrics through ``aistack_hub.metrics``).

A dedicated registry, so that tests and several services in one process do not collide.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func

from job_runner.db import ACTIVE_STATES, ALLOC_ALLOCATED, QUEUED, Allocation, Job

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_QUEUED = Gauge("aistack_jobs_queued", "Jobs waiting in the queue", ["tenant"], registry=REGISTRY)
JOBS_RUNNING = Gauge("aistack_jobs_running", "Jobs admitted or running", ["tenant"], registry=REGISTRY)
SERVERS_ALLOCATED = Gauge("aistack_servers_allocated", "Server slices allocated", ["tenant"], registry=REGISTRY)
GPU_MILLI_IN_USE = Gauge("aistack_gpu_milli_in_use", "GPU slices in use (milli-GPUs, servers and jobs)",
                         ["tenant"], registry=REGISTRY)
JOBS_ADMITTED = Counter("aistack_jobs_admitted", "Jobs admitted by the scheduler", ["tenant"], registry=REGISTRY)
JOBS_FINISHED = Counter("aistack_jobs_finished", "Jobs that reached a final state", ["tenant", "state"],
                        registry=REGISTRY)
JOBS_RETRIED = Counter("aistack_jobs_retried", "Job attempts retried", ["tenant", "failure"], registry=REGISTRY)
IS_LEADER = Gauge("aistack_scheduler_leader", "1 when this replica runs the scheduling loop", registry=REGISTRY)
PASS_FAILURES = Counter("aistack_scheduler_pass_failures", "Scheduling passes that raised (the loop goes on; "
                        "/health answers 503 until a pass succeeds)", registry=REGISTRY)
STALE_PLACEMENTS = Counter("aistack_stale_placements", "Running workloads whose stored placement was gone from the "
                           "inventory on restore (jobs requeued, server slices released)", ["kind"], registry=REGISTRY)
RECONCILED = Counter("aistack_allocations_reconciled", "Server slices the service released because no running or "
                     "starting server in the hub held them", registry=REGISTRY)
TICK_SECONDS = Histogram("aistack_scheduler_tick_seconds", "Duration of one scheduling pass", registry=REGISTRY,
                         buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
SPAWN_LATENCY = Histogram("aistack_allocation_latency_seconds",
                          "From POST allocations to the slice being allocated (server spawn)",
                          registry=REGISTRY, buckets=_LATENCY_BUCKETS)
JOB_WAIT = Histogram("aistack_job_wait_seconds", "From submission to running (queue wait)",
                     registry=REGISTRY, buckets=_LATENCY_BUCKETS)
JOB_DURATION = Histogram("aistack_job_duration_seconds", "From running to a final state", ["state"],
                         registry=REGISTRY, buckets=_LATENCY_BUCKETS)


def set_per_tenant(gauge: Gauge, values: dict, tenants) -> None:
    for t in set(tenants) | set(values):
        gauge.labels(tenant=t).set(values.get(t, 0))


def update_gauges(db, scheduler, tenants) -> None:
    """The per-tenant gauges, from the database (counts) and the leader's scheduler (GPU in use)."""
    with db.read() as s:
        queued = dict(s.query(Job.tenant, func.count()).filter(Job.state == QUEUED).group_by(Job.tenant).all())
        running = dict(s.query(Job.tenant, func.count()).filter(Job.state.in_(ACTIVE_STATES))
                       .group_by(Job.tenant).all())
        servers = dict(s.query(Allocation.tenant, func.count()).filter(Allocation.state == ALLOC_ALLOCATED)
                       .group_by(Allocation.tenant).all())
    set_per_tenant(JOBS_QUEUED, queued, tenants)
    set_per_tenant(JOBS_RUNNING, running, tenants)
    set_per_tenant(SERVERS_ALLOCATED, servers, tenants)
    gpu = {}
    for t in set(tenants) | set(queued) | set(running) | set(servers):
        try:
            gpu[t] = scheduler.usage(t).group("any").gpu_milli
        except (KeyError, AttributeError):  # a tenant the scheduler does not know (removed meanwhile)
            gpu[t] = 0
    set_per_tenant(GPU_MILLI_IN_USE, gpu, tenants)
