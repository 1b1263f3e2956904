"""ORM of accounting (issue 15, docs/accounting.md): usage intervals, their daily rollup, the price book and
tenant budgets.

Times of intervals are epoch seconds (floats, UTC): arithmetic on them is exact to the microsecond in SQLite
and PostgreSQL alike. ``day`` is the UTC day number ``floor(epoch / 86400)``.
"""
from __future__ import annotations

import datetime as _dt

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow


class UsageInterval(Base):
    """One workload holding one slice from ``start_ts`` to ``end_ts`` (NULL: still held). One row per job
    attempt (``attempt`` >= 1) or server allocation (``attempt`` 0); the unique key makes a second open of the
    same attempt impossible (no double counting). The slice is stored as charged (job_runner.accounting.charge)."""

    __tablename__ = "usage_intervals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # job | server
    workload_id: Mapped[int] = mapped_column(Integer, nullable=False)  # jobs.id or allocations.id
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    slice_kind: Mapped[str] = mapped_column(String(16), nullable=False, default="cpu")  # cpu|whole|share|mig
    gpu_model: Mapped[str] = mapped_column(String(63), nullable=False, default="")  # '' = no GPU
    gpus: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # GPU-equivalents charged
    gpu_milli: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # share: milli-GPU per GPU
    whole_gpus: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    mig_profile: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cpu: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # cores
    memory_gib: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    start_ts: Mapped[float] = mapped_column(Float, nullable=False)
    end_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    # > 1 day long: found by the report's edge query without an index scan of every earlier interval.
    long: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Filled by GPU monitoring / culling (issue 15 B): seconds held while idle; measured GPU-seconds used.
    idle_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    used_gpu_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        UniqueConstraint("kind", "workload_id", "attempt", name="uq_usage_workload_attempt"),
        Index("ix_usage_open", "end_ts"),
        Index("ix_usage_start", "start_ts"),
        Index("ix_usage_long", "long", "start_ts"),
    )


class UsageDaily(Base):
    """Closed intervals summed per UTC day, tenant, user, GPU model and kind (written in the transaction that
    closes them): reports read whole days from here and only the partial days from the raw intervals."""

    __tablename__ = "usage_daily"

    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # GPU-seconds requested
    charged_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # max(request, usage)
    cpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # core-seconds
    mem_gib_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    idle_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    held_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # wall seconds held
    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # intervals that started this day

    __table_args__ = (Index("ix_usage_daily_tenant_day", "tenant", "day"),)


class UsageDailyTenant(Base):
    """``usage_daily`` without the user (written with it): what reports by tenant read (5x fewer rows)."""

    __tablename__ = "usage_daily_tenant"

    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    charged_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    mem_gib_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    idle_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    held_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class UsageBlock(Base):
    """``usage_daily`` summed over blocks of ``BLOCK_DAYS`` (8) UTC days (``blk`` = day // 8), per tenant, user,
    GPU model and kind, written with it (migration 0011). A report without a per-day grouping reads the whole
    blocks of its period from here and only the up to 7 days at each end of a block run from ``usage_daily``:
    90 days per user come back as ~11 block rows + <= 14 day rows per key instead of 90 day rows."""

    __tablename__ = "usage_block"

    blk: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    charged_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    mem_gib_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    idle_gpu_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    held_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (Index("ix_usage_block_tenant_blk", "tenant", "blk"),)


class Price(Base):
    """One version of one price: ``unit_price`` per hour of ``resource`` (gpu: per GPU-hour of ``gpu_model``,
    '' = any model without its own price; cpu: per core-hour; memory: per GiB-hour), in force from
    ``effective_from`` (a UTC date) until the next version of the same (resource, gpu_model)."""

    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource: Mapped[str] = mapped_column(String(16), nullable=False)
    gpu_model: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    unit_price: Mapped[float] = mapped_column(Float, nullable=False)
    currency: Mapped[str] = mapped_column(String(8), nullable=False, default="USD")
    effective_from: Mapped[_dt.date] = mapped_column(Date, nullable=False)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("resource", "gpu_model", "effective_from", name="uq_price_version"),
    )


class Budget(Base):
    """A tenant's spend limit per calendar month (UTC): warnings at ``thresholds`` (fractions), and with
    ``hold`` new work of the tenant waits (pending reason ``over_budget``) once the month's spend reaches it."""

    __tablename__ = "budgets"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    amount: Mapped[float] = mapped_column(Float, nullable=False)
    currency: Mapped[str] = mapped_column(String(8), nullable=False, default="USD")
    thresholds: Mapped[list] = mapped_column(JSON, nullable=False, default=lambda: [0.5, 0.8, 1.0])
    hold: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
