"""Tables of GPU monitoring and GPU-aware idle culling (issue 15 B; migration 0009).

Times are UNIX seconds (float), the samplers' clock. Rows are bounded: ``prune`` deletes samples older
than the retention and closed alarms past it (``job_runner.monitoring.store``).

- ``gpu_samples``: per GPU (or MIG instance) and sample: utilisation, memory, graphics-engine activity.
- ``workload_samples``: per workload (``alloc:<id>`` server slice, ``job:<id>``) and sample.
- ``gpu_idle_state``: per server slice, since when its GPU activity has been under the threshold, the
  user's "keep until", whether it was warned/stopped.
- ``gpu_idle_intervals``: closed and open intervals a server slice held its GPU(s) idle: what accounting
  reports as idle-held GPU-hours (``gpu_milli`` x duration).
- ``gpu_idle_policies``: the per-tenant override of the culling policy (NULL fields: the service's traits).
- ``monitoring_alarms``: unhealthy GPUs (XID), full disks, a stuck queue; open until cleared.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base


class GPUSampleRow(Base):
    __tablename__ = "gpu_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    node: Mapped[str] = mapped_column(String(255), nullable=False)
    gpu: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    util_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    engine_active: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_used_mib: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_total_mib: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_gpu_samples_ts", "ts"), Index("ix_gpu_samples_gpu_ts", "node", "gpu", "ts"))


class WorkloadSampleRow(Base):
    __tablename__ = "workload_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    workload: Mapped[str] = mapped_column(String(64), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    user: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    util_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_used_mib: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_workload_samples_ts", "ts"), Index("ix_workload_samples_w_ts", "workload", "ts"))


class GPUIdleState(Base):
    __tablename__ = "gpu_idle_state"

    allocation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    user: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    server_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    idle_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_sample_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_util: Mapped[float | None] = mapped_column(Float, nullable=True)
    keep_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    warned_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class GPUIdleInterval(Base):
    __tablename__ = "gpu_idle_intervals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    allocation_id: Mapped[int] = mapped_column(Integer, nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    gpu_milli: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    started_at: Mapped[float] = mapped_column(Float, nullable=False)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # NULL: still idle
    # why it ended: "active" (GPU busy again), "stopped" (culled), "released" (server stopped otherwise)
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (Index("ix_gpu_idle_intervals_alloc", "allocation_id"),
                      Index("ix_gpu_idle_intervals_tenant_start", "tenant", "started_at"))


class GPUIdlePolicyRow(Base):
    __tablename__ = "gpu_idle_policies"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    enabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    threshold_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    idle_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    warn_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_keep_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AlarmRow(Base):
    __tablename__ = "monitoring_alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # gpu_xid, disk_full, queue_stuck, source
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False, default="warning")
    text: Mapped[str] = mapped_column(Text, nullable=False)
    first_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_at: Mapped[float] = mapped_column(Float, nullable=False)
    cleared_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_monitoring_alarms_open", "kind", "subject", "cleared_at"),)
