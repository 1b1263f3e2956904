"""``GET me``: the caller, the tenants they may charge, and what they may do there (docs/architecture.md).

The lab extension's Run-as-job dialog shows the tenant choice and offers the emergency priority from it;
the admin page reads it too.
"""
from __future__ import annotations

from .base import APIHandler


class MeHandler(APIHandler):
    async def get(self):
        from aistack_hub.config import load_tenants

        ident = self.identity
        tenants = []
        for t in load_tenants(self.ctx.db):
            # JupyterHub admins may charge any tenant (pick_tenant allows it); others their groups
            if ident.is_admin or t.name in ident.groups:
                tenants.append({"name": t.name, "admin": ident.is_admin or ident.name in t.admins,
                                "emergency": ident.name in t.emergency_users, "member": t.name in ident.groups})
        self.write_json({"name": ident.name, "kind": ident.kind, "admin": ident.is_admin,
                         "tenants": sorted(tenants, key=lambda t: (not t["member"], t["name"]))})
