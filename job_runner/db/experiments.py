"""ORM of experiments (issue 13): studies, their trials (each an ordinary job), and every job's metrics.

- ``experiments``: one study: what it searches (``spec``: space, objective, strategy, budget, limits), its
  notebook (by content, in ``notebooks`` like a job's), state and the message that says why (a metric never
  reported, ...).
- ``experiment_trials``: one configuration; ``job_id`` is the job that runs it (a resume queues the same
  job again, so its checkpoint folder and metrics carry on); ``stopped_by`` "rule" (the pruner) or a user.
- ``job_metrics``: the points ``report()`` (or a ``name=value`` stdout line) recorded, for any job.
- ``metric_cursors``: how far the service has read a job attempt's metrics file or log (restart-safe).
"""
from __future__ import annotations

import datetime as _dt

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow

EXP_RUNNING = "running"
EXP_COMPLETED = "completed"
EXP_CANCELLED = "cancelled"
EXP_FAILED = "failed"
EXP_FINAL = (EXP_COMPLETED, EXP_CANCELLED, EXP_FAILED)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False)
    priority: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=EXP_RUNNING)
    # space, objective, strategy, sampler, pruner, max_trials, parallelism, budget, metrics_collector, seed, ...
    spec: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    notebook_sha: Mapped[str] = mapped_column(String(64), nullable=False)
    notebook_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    kernel_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)

    __table_args__ = (Index("ix_experiments_user", "user", "id"), Index("ix_experiments_state", "state"))


class Trial(Base):
    __tablename__ = "experiment_trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # 0, 1, ... within the experiment
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    budget: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the budget parameter's value now
    # who added it: "sampler" | "user" (POST trials) ; who stopped it: "rule" | a user's name
    origin: Mapped[str] = mapped_column(String(16), nullable=False, default="sampler")
    stopped_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # 1 once a person resumed it: the pruner no longer judges it
    steered: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_trials_experiment", "experiment_id", "number"), Index("ix_trials_job", "job_id"))


class JobMetric(Base):
    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    at: Mapped[float | None] = mapped_column(Float, nullable=True)  # epoch seconds as reported

    __table_args__ = (Index("ix_job_metrics_job", "job_id", "name", "step"),)


class MetricCursor(Base):
    __tablename__ = "metric_cursors"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # "file" | "stdout"
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # stdout: the step counter of lines without an epoch/step field
    state: Mapped[dict | None] = mapped_column(JSON, nullable=True)
