"""Tenants and quotas (admins write, tenant admins read their own), usage, inventory, profiles, the caller.

``GET me`` feeds the lab extension's Run-as-job dialog (the tenant choice, the emergency priority) and
the admin page.
"""
from __future__ import annotations

from aistack_hub.services.models import ProfilesQuery

from .base import APIHandler


class ViewHandler(APIHandler):
    """GET of a read model scoped to the caller (``view``: the TenantService method: tenants they
    administer, usage, inventory, me)."""

    def initialize(self, api, view: str):
        super().initialize(api)
        self.view = getattr(self.services.tenants, view)

    async def get(self):
        self.write_json(await self.view(self.identity))


class TenantHandler(APIHandler):
    async def get(self, name):
        self.write_json(await self.services.tenants.get(self.identity, name))

    async def put(self, name):
        self.services.ctx.require_admin(self.identity)
        out, created = await self.services.tenants.put(self.identity, name, await self.json_object())
        self.write_json(out, 201 if created else 200)

    async def patch(self, name):
        self.services.ctx.require_admin(self.identity)
        self.write_json(await self.services.tenants.patch(self.identity, name, await self.json_object()))

    async def delete(self, name):
        self.services.ctx.require_admin(self.identity)
        await self.services.tenants.delete(self.identity, name)
        self.set_status(204)
        self.finish()


class ProfilesHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.tenants.profiles(self.identity, self.query(ProfilesQuery)))
