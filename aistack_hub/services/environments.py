"""Environments ("framework marketplace", issue 15 C): a catalog of environments per tenant.

An environment is a kernelspec name already installed, or a Python interpreter (``python``: a virtual
environment's ``bin/python`` with ipykernel) for which we write a kernelspec ``aistack-<name>``
(``job_runner.binding.storage.write_kernelspecs``), and/or an ``image`` for Kubernetes. Jobs run with an
environment run its kernel (``kernel_name``) locally and its image on Kubernetes; servers see their
tenant's kernelspecs in JupyterLab's launcher. docs/environments.md.
"""
from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import Field

from job_runner.binding.storage import StorageError, TenantStorage, check_name, kernel_name_of, write_kernelspecs
from job_runner.db import utcnow
from job_runner.db.resources import Environment

from .context import Identity, ServiceContext
from .errors import Invalid, NotFound
from .models import _Body, _Query

_KERNEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
MAX_ENV = 50


class EnvironmentsQuery(_Query):
    tenant: str | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=10 ** 9)] = 0  # as storage's MAX_OFFSET


class EnvironmentBody(_Body):
    display_name: Annotated[str, Field(max_length=255)] = ""
    description: Annotated[str, Field(max_length=2000)] = ""
    tenants: Annotated[list[Annotated[str, Field(min_length=1, max_length=63)]], Field(min_length=1, max_length=1000)] = ["*"]
    kernel_name: str | None = None
    python: Annotated[str, Field(max_length=1024)] | None = None
    image: Annotated[str, Field(max_length=1024)] | None = None
    env: dict[str, Annotated[str, Field(max_length=4096)]] = {}


def env_json(e: Environment) -> dict:
    return {"name": e.name, "display_name": e.display_name or e.name, "description": e.description,
            "tenants": list(e.tenants or []), "kernel_name": kernel_name_of(_plain(e)), "python": e.python,
            "image": e.image, "env": dict(e.env or {})}


def _plain(e: Environment) -> dict:
    return {"name": e.name, "display_name": e.display_name, "kernel_name": e.kernel_name, "python": e.python,
            "image": e.image, "env": dict(e.env or {})}


def offered(e, tenant: str) -> bool:
    """Whether ``e`` (a row or its JSON) is offered to ``tenant``."""
    ts = (e["tenants"] if isinstance(e, dict) else e.tenants) or []
    return "*" in ts or tenant in ts


class EnvironmentService:
    def __init__(self, ctx: ServiceContext, storage: TenantStorage):
        self.ctx = ctx
        self.storage = storage

    # ------------------------------------------------------------------ reads
    def _list(self, ident: Identity, q: EnvironmentsQuery) -> dict:
        with self.ctx.db.read() as s:
            rows = [env_json(r) for r in s.query(Environment).order_by(Environment.name)]
        if q.tenant is not None:
            if q.tenant not in {t.name for t in self.ctx.tenants()}:
                raise Invalid(f"no tenant {q.tenant!r}", "unknown_tenant")
            if not (ident.is_admin or q.tenant in ident.groups or q.tenant in self.ctx.admin_tenants(ident)):
                raise NotFound(f"no tenant {q.tenant!r} you may see")
            rows = [r for r in rows if offered(r, q.tenant)]
        elif not ident.is_admin:
            mine = set(ident.groups) | self.ctx.admin_tenants(ident)
            rows = [r for r in rows if any(offered(r, t) for t in mine)]
        page = rows[q.offset:q.offset + q.limit]
        return {"items": page, "total": len(rows),
                "next_offset": q.offset + q.limit if q.offset + q.limit < len(rows) else None}

    async def list(self, ident: Identity, q: EnvironmentsQuery) -> dict:
        return await self.ctx.offload.io(self._list, ident, q)

    # ------------------------------------------------------------------ admins
    def _check(self, name: str, body: EnvironmentBody) -> None:
        try:
            check_name(name, "environment")
        except StorageError as e:
            raise Invalid(str(e), "bad_name") from None
        if not (body.kernel_name or body.python or body.image):
            raise Invalid("say what the environment is: kernel_name, python or image", "bad_environment")
        if body.kernel_name and body.python:
            raise Invalid("give kernel_name or python, not both", "bad_environment")
        if body.kernel_name is not None and not _KERNEL.match(body.kernel_name):
            raise Invalid("kernel_name: letters, digits, '.', '_' or '-', at most 64", "bad_environment")
        if body.python is not None:
            if not os.path.isabs(body.python):
                raise Invalid("python must be an absolute path (a virtual environment's bin/python)", "bad_environment")
            if not (os.path.isfile(body.python) and os.access(body.python, os.X_OK)):
                raise Invalid(f"python {body.python!r} is not an executable file here", "bad_environment")
        if body.image is not None and (not body.image.strip() or any(c.isspace() for c in body.image)):
            raise Invalid("image: an image reference without spaces", "bad_environment")
        bad = [k for k in body.env if not _ENV_KEY.match(k) or k.startswith("AISTACK_") or k.startswith("JUPYTERHUB_")]
        if bad or len(body.env) > MAX_ENV:
            raise Invalid(f"env: at most {MAX_ENV} upper-case names, none AISTACK_* or JUPYTERHUB_* ({', '.join(bad)})",
                          "bad_environment")
        known = {t.name for t in self.ctx.tenants()}
        unknown = sorted(set(body.tenants) - known - {"*"})
        if unknown:
            raise Invalid(f"no tenant {', '.join(unknown)}", "unknown_tenant")

    def _put(self, name: str, body: EnvironmentBody) -> tuple[dict, bool]:
        self._check(name, body)
        with self.ctx.db.session() as s:
            row = s.query(Environment).filter(Environment.name == name).one_or_none()
            created = row is None
            row = row or Environment(name=name)
            row.display_name, row.description = body.display_name, body.description
            row.tenants = sorted(set(body.tenants))
            row.kernel_name, row.python, row.image, row.env = body.kernel_name, body.python, body.image, dict(body.env)
            row.updated_at = utcnow()
            s.add(row)
            s.flush()
            out = env_json(row)
        self.sync()  # state written first, then the kernelspecs
        return out, created

    async def put(self, ident: Identity, name: str, body: EnvironmentBody) -> tuple[dict, bool]:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._put, name, body)

    def _delete(self, name: str) -> None:
        with self.ctx.db.session() as s:
            row = s.query(Environment).filter(Environment.name == name).one_or_none()
            if row is None:
                raise NotFound(f"no environment {name!r}")
            s.delete(row)
        self.sync()

    async def delete(self, ident: Identity, name: str) -> None:
        self.ctx.require_admin(ident)
        await self.ctx.offload.io(self._delete, name)

    # ------------------------------------------------------------------ kernelspecs and lookups
    def sync(self) -> dict:
        """Blocking: write the catalog's kernelspecs (every tenant's folder and ``all/``)."""
        with self.ctx.db.read() as s:
            rows = [_plain(r) | {"tenants": list(r.tenants or [])} for r in s.query(Environment)]
        catalog = {t.name: [r for r in rows if "*" in r["tenants"] or t.name in r["tenants"]]
                   for t in self.ctx.tenants()}
        return write_kernelspecs(self.storage, catalog)

    def all_kernels_path(self) -> str:
        """The Jupyter data folder with every environment's kernelspec (the service's kernel check)."""
        return os.path.join(os.path.abspath(self.storage.environments_dir), "all")

    def refusal(self, tenant: str, kernel_name: str | None) -> str | None:
        """Blocking: why ``tenant`` may not run ``kernel_name``, or None. A kernel that belongs to catalog
        environments none of which is offered to the tenant is another tenant's environment (its kernelspec
        is installed for the service's check, so the name alone would pass it and fail at start)."""
        if not kernel_name:
            return None
        with self.ctx.db.read() as s:
            owners = [(r.name, offered(r, tenant)) for r in s.query(Environment)
                      if kernel_name_of(_plain(r)) == kernel_name]
        if owners and not any(ok for _, ok in owners):
            return (f"kernel {kernel_name!r} is the environment {owners[0][0]!r}, which is not offered to "
                    f"tenant {tenant!r}; ask a platform admin to offer it")
        return None

    def image_for(self, tenant: str, kernel_name: str | None) -> str | None:
        """Blocking: the image of the tenant's environment whose kernel is ``kernel_name`` (Kubernetes jobs)."""
        if not kernel_name:
            return None
        with self.ctx.db.read() as s:
            for r in s.query(Environment):
                if offered(r, tenant) and r.image and kernel_name_of(_plain(r)) == kernel_name:
                    return r.image
        return None
