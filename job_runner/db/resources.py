"""Tenant storage and environments (issue 15 C): storage settings per tenant, published datasets and
their grants, the environment catalog. docs/storage.md, docs/environments.md. Migration 0010."""
from __future__ import annotations

import datetime as _dt

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow


class TenantStorageRow(Base):
    """A tenant's storage settings (a tenant without a row has ``TenantStorage.default_quota_gib``)."""

    __tablename__ = "tenant_storage"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    quota_gib: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the default; 0: none
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # Kubernetes: the last scan of the tenant's claim (k8s_storage_scan; migration 0012); NULL: never measured
    claim_used_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claim_files: Mapped[int | None] = mapped_column(Integer, nullable=True)
    claim_partial: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    claim_measured_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    claim_message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why the last scan measured nothing


class Dataset(Base):
    """A read-only dataset an admin publishes (its files: TenantStorage.datasets_root/<name>; on Kubernetes
    a claim per namespace bound to ``volume_name``)."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    size_gib: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    volume_name: Mapped[str] = mapped_column(String(253), nullable=False, default="")
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class DatasetGrant(Base):
    __tablename__ = "dataset_grants"

    dataset: Mapped[str] = mapped_column(String(63), ForeignKey("datasets.name", ondelete="CASCADE"),
                                         primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)


class Environment(Base):
    """One catalog entry: a kernelspec name or a Python interpreter (embedded) and/or an image (Kubernetes),
    offered to ``tenants`` (["*"] = all)."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tenants: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    kernel_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    python: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    image: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    env: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
