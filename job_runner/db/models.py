"""SQLAlchemy ORM of the job service: tenants, jobs, job events, allocations, leases.

The database is the source of truth: the scheduling loop rebuilds its in-memory scheduler from these rows
after a restart, and every state change is a row update (with an event) written before any side effect.
"""
from __future__ import annotations

import datetime as _dt

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Job states. "admitted" = the scheduler placed it and the executor is starting it.
QUEUED = "queued"
ADMITTED = "admitted"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATES = (QUEUED, ADMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE_STATES = (ADMITTED, RUNNING)

# Allocation (server workload) states.
ALLOC_PENDING = "pending"
ALLOC_ALLOCATED = "allocated"
ALLOC_RELEASED = "released"
ALLOC_STATES = (ALLOC_PENDING, ALLOC_ALLOCATED, ALLOC_RELEASED)


def utcnow() -> _dt.datetime:
    """Naive UTC now (SQLite has no time zones; every timestamp here is UTC)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The tenant as in the deployment config (quotas, weight, admins, windows, ...), JSON.
    spec: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # Bumped by every submission of the tenant: taking the row's write lock first serializes
    # concurrent submissions so that max_queued_jobs holds (SQLite and PostgreSQL alike).
    submit_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False)
    priority: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=QUEUED)
    group_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # What to run: the notebook snapshotted at submission, where it came from, its parameters.
    notebook: Mapped[str] = mapped_column(Text, nullable=False)
    notebook_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    kernel_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_on: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    expected_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    # The slice: the profile's request at submission, the scheduler's assignment once admitted (never an
    # environment: that is computed from the assignment when a process starts, job_runner.binding).
    request: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    assignment: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    # Execution: attempt number (1-based once admitted), the executor's handle, progress, failure.
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    handle: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    failure: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # 1 = a cancel was asked (by the API), 2 = the scheduling loop has handled it.
    cancel_requested: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # 1 once the leading scheduling loop has taken this queued job into its scheduler.
    enqueued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    admitted_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    events: Mapped[list["JobEvent"]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_user_id", "user", "id"),
        Index("ix_jobs_tenant_state", "tenant", "state"),
        Index("ix_jobs_group", "group_id"),
        Index("ix_jobs_cancel", "cancel_requested"),
        Index("ix_jobs_enqueued", "enqueued", "state"),
    )


class JobEvent(Base):
    """One state transition of a job (the job's history)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    replica: Mapped[str | None] = mapped_column(String(255), nullable=True)

    job: Mapped[Job] = relationship(back_populates="events")


class Allocation(Base):
    """A server workload: a GPU slice the hub's spawner asked for (POST allocations)."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False)
    server_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    priority: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=ALLOC_PENDING)
    request: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    assignment: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    allocated_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    released_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_allocations_state", "state"),)


class Lease(Base):
    """Leader lease for databases without advisory locks (SQLite)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
