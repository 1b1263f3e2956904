"""The deployment config file (YAML): tenants, quotas, profiles, GPU inventory, scheduler settings.

Example::

    tenants:
      - name: team-a
        weight: 2
        admins: [alice]
        quotas: {any: {gpu_milli: 2000, max_running_jobs: 4, max_queued_jobs: 200}}
        windows: ["sat-sun 0-24"]
    profiles:
      - slug: a100-half
        display_name: Half an A100
        request: {kind: share, gpu_milli: 500, gpu_mem_mib: 20000, cpu_milli: 4000, memory_mib: 16000}
    inventory:
      - {name: node1, cpu_milli: 64000, memory_mib: 262144, gpus: 4, gpu_model: A100-40GB}
    scheduler: {policy: default, preemption: false}

It is loaded into the scheduling core's types (``Tenant``, ``ProfileCatalog``, ``Inventory``); the tenants
are seeded into the database, where the admin API may later change them (the database then wins).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from job_runner.scheduling import Inventory, ProfileCatalog, Tenant


class ConfigError(ValueError):
    """The deployment config is invalid (the message says where)."""


@dataclass
class DeploymentConfig:
    tenants: list = field(default_factory=list)  # [Tenant]
    profiles: ProfileCatalog = field(default_factory=lambda: ProfileCatalog([]))
    inventory: Inventory = field(default_factory=lambda: Inventory([]))
    inventory_source: str = "configured"
    policy: str = "default"
    preemption: bool = False

    @classmethod
    def from_dict(cls, data: dict | None) -> "DeploymentConfig":
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError("the deployment config must be a mapping")
        unknown = set(data) - {"tenants", "profiles", "inventory", "scheduler"}
        if unknown:
            raise ConfigError(f"unknown top-level keys: {sorted(unknown)}")
        try:
            tenants = [Tenant.from_config(t) for t in data.get("tenants") or []]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"tenants: {e}") from e
        names = [t.name for t in tenants]
        if len(set(names)) != len(names):
            raise ConfigError("tenants: duplicate names")
        try:
            profiles = ProfileCatalog.from_config(data.get("profiles") or [])
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"profiles: {e}") from e
        try:
            inventory = Inventory.from_config(data.get("inventory") or [])
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"inventory: {e}") from e
        sched = data.get("scheduler") or {}
        return cls(tenants=tenants, profiles=profiles, inventory=inventory,
                   policy=sched.get("policy", "default"), preemption=bool(sched.get("preemption", False)))

    @classmethod
    def load(cls, path: str | None) -> "DeploymentConfig":
        if not path:
            return cls.from_dict({})
        if not os.path.exists(path):
            raise ConfigError(f"deployment config {path} does not exist")
        with open(path) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: {e}") from e
        return cls.from_dict(data)

    def tenant(self, name: str):
        for t in self.tenants:
            if t.name == name:
                return t
        return None


def seed_tenants(db, config: DeploymentConfig, overwrite: bool = False) -> None:
    """Insert the config's tenants into the database (existing rows are kept unless ``overwrite``)."""
    from job_runner.db import TenantRow, utcnow

    with db.session() as s:
        for t in config.tenants:
            row = s.get(TenantRow, t.name)
            if row is None:
                s.add(TenantRow(name=t.name, spec=t.to_dict(), submit_seq=0, updated_at=utcnow()))
            elif overwrite:
                row.spec = t.to_dict()
                row.updated_at = utcnow()


def load_tenants(db) -> list:
    """The tenants as the database holds them (the config's, as changed by the admin API)."""
    from job_runner.db import TenantRow

    with db.read() as s:
        return [Tenant.from_config(r.spec) for r in s.query(TenantRow).order_by(TenantRow.name)]


def load_tenant(db, name: str):
    from job_runner.db import TenantRow

    with db.read() as s:
        row = s.get(TenantRow, name)
        return Tenant.from_config(row.spec) if row is not None else None
