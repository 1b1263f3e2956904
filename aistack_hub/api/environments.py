"""The environment catalog per tenant (docs/environments.md): members list what their tenant offers,
admins add, change and remove entries."""
from __future__ import annotations

from aistack_hub.services.environments import EnvironmentBody, EnvironmentsQuery

from .base import APIHandler


class EnvironmentsHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.environments.list(self.identity, self.query(EnvironmentsQuery)))


class EnvironmentHandler(APIHandler):
    async def put(self, name):
        out, created = await self.services.environments.put(self.identity, name, await self.body(EnvironmentBody))
        self.write_json(out, 201 if created else 200)

    async def delete(self, name):
        await self.services.environments.delete(self.identity, name)
        self.set_status(204)
        self.finish()
