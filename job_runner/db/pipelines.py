"""ORM of pipelines and schedules (issue 14; migration 0007).

- ``pipeline_runs``: one run of a pipeline file (the parsed spec as JSON, its text, its state);
- ``pipeline_nodes``: one row per task, or per fan-out value, of a run (unique ``(run_id, key)``), with the
  job of its current attempt and every job it had;
- ``schedules``: a cron expression (with a time zone) or the tenant's window opening, a target (a notebook
  job, a pipeline), the concurrency and catch-up policies;
- ``schedule_fires``: one row per (schedule, slot), unique: written *before* the job is submitted, so two
  replicas (or a restart) never run one slot twice;
- ``tenant_holidays``: the per-tenant holiday calendar an admin sets (days the tenant's window is open all day);
- ``notifications``: what the owner is told (a schedule's run failed), read by the lab extension.
"""
from __future__ import annotations

import datetime as _dt

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="running")
    spec: Mapped[dict] = mapped_column(JSON, nullable=False)  # job_runner.pipelines.Pipeline.to_dict()
    spec_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    source_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    run_dir: Mapped[str] = mapped_column(String(1024), nullable=False)
    schedule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_pipeline_runs_state", "state"), Index("ix_pipeline_runs_user", "user", "id"),
                      Index("ix_pipeline_runs_tenant", "tenant", "id"))


class PipelineNode(Base):
    __tablename__ = "pipeline_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    task: Mapped[str] = mapped_column(String(63), nullable=False)
    index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    budget: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    parameters: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # of the current attempt
    values: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)  # what it reported
    files: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)  # name -> path in the home
    failure: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_pipeline_nodes_run_key"),
                      Index("ix_pipeline_nodes_job", "job_id"))


class Schedule(Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # notebook | pipeline
    target: Mapped[dict] = mapped_column(JSON, nullable=False)
    cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    on_window: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # the tenant's window opening
    concurrency_policy: Mapped[str] = mapped_column(String(16), nullable=False, default="Allow")
    catch_up: Mapped[str] = mapped_column(String(16), nullable=False, default="none")
    catch_up_max: Mapped[int] = mapped_column(Integer, nullable=False, default=10)
    starting_deadline_s: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    paused: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cursor: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False)  # slots up to here are handled
    next_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_schedules_user", "user", "id"), Index("ix_schedules_tenant", "tenant", "id"))


class ScheduleFire(Base):
    __tablename__ = "schedule_fires"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(Integer, ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False)
    slot: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False)  # UTC
    # firing (row written, not submitted yet) | submitted | skipped | failed | succeeded | cancelled
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    manual: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replica: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (UniqueConstraint("schedule_id", "slot", name="uq_schedule_fires_slot"),
                      Index("ix_schedule_fires_state", "state"))


class TenantHoliday(Base):
    __tablename__ = "tenant_holidays"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    day: Mapped[_dt.date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, default="")


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    link: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_notifications_user", "user", "id"),)
