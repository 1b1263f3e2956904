"""Tenants in the database: the one place a ``TenantRow`` becomes the core's ``Tenant``.

The deployment config seeds the rows; the admin API may change them later (the database then wins). The
scheduling loop and the API read them through these functions only.
"""
from __future__ import annotations

from sqlalchemy import func

from job_runner.scheduling import Tenant

from .models import TenantRow, utcnow


def load_tenants(db) -> list[Tenant]:
    """The tenants as the database holds them, by name."""
    with db.read() as s:
        return [Tenant.from_config(r.spec) for r in s.query(TenantRow).order_by(TenantRow.name)]


def load_tenant(db, name: str) -> Tenant | None:
    with db.read() as s:
        row = s.get(TenantRow, name)
        return Tenant.from_config(row.spec) if row is not None else None


def tenants_version(db) -> tuple:
    """Changes whenever a tenant is added or edited (the scheduling loop reloads its tenants then)."""
    with db.read() as s:
        return tuple(s.query(func.count(TenantRow.name), func.max(TenantRow.updated_at)).one())


def seed_tenants(db, tenants, overwrite: bool = False) -> None:
    """Insert ``tenants`` (core ``Tenant`` objects) into the database; existing rows are kept unless
    ``overwrite``."""
    with db.session() as s:
        for t in tenants:
            row = s.get(TenantRow, t.name)
            if row is None:
                s.add(TenantRow(name=t.name, spec=t.to_dict(), submit_seq=0, updated_at=utcnow()))
            elif overwrite:
                row.spec = t.to_dict()
                row.updated_at = utcnow()
