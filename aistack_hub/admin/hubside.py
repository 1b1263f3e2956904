"""The parts of onboarding that live in the hub process (imported by ``aistack_hub.hubconfig``):

- ``AIStackNativeAuthenticator``: NativeAuthenticator (sign-up, approval at ``/hub/authorize``) plus one hub
  API endpoint, ``GET /hub/api/aistack/signups``, listing sign-ups that wait for approval, so the admin page
  (served by the aistack service, which cannot read the hub's database) can say someone waits, with a link;
- ``TenantDirectory``: the tenants as the aistack service has them (names, admins, server limits), refreshed
  in the background: hub templates render synchronously;
- ``HomeHints``: the template variable behind the hub's home and spawn pages: a user in no tenant is told
  what to do instead of seeing a Start button that can only fail, and the server limits are shown before
  Start, with what to do when one is reached.
"""
from __future__ import annotations

import asyncio
import json
import time

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo


class PendingSignupsHandler(APIHandler):
    """``GET /hub/api/aistack/signups``: ``{pending: [{name, email}], approved: [names], authorize_url}``.
    Needs ``admin:users`` (the aistack service's token has it; so do JupyterHub admins)."""

    @needs_scope("admin:users")
    async def get(self):
        infos = self.db.query(UserInfo).order_by(UserInfo.id).all()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({
            "pending": [{"name": i.username, "email": i.email or ""} for i in infos if not i.is_authorized],
            "approved": [i.username for i in infos if i.is_authorized],
            "authorize_url": self.hub.base_url + "authorize",
        }))


_native: list = []  # the hub's AIStackNativeAuthenticator, once JupyterHub made it (HomeHints reads it)


class AIStackNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator (configured as ``NativeAuthenticator``: its config section applies) with the
    pending sign-ups endpoint above."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _native[:] = [self]

    def get_handlers(self, app):
        return super().get_handlers(app) + [(r"/api/aistack/signups", PendingSignupsHandler)]

    def pending_signups(self) -> list[str]:
        """Names of the sign-ups that wait for approval (one query on the hub's database)."""
        return [i.username for i in self.db.query(UserInfo).filter(UserInfo.is_authorized.is_(False))
                .order_by(UserInfo.id)]


class TenantDirectory:
    """The service's tenants (``GET tenants`` with the hub's token), refreshed at most every ``refresh_s``
    in the background; until the first answer, the config file's tenants stand in."""

    def __init__(self, tenants: list, api_url: str, token: str, refresh_s: float = 5.0):
        self.tenants = {t.name: t.to_dict() for t in tenants}
        self.api_url, self.token, self.refresh_s = api_url, token, refresh_s
        self.last = float("-inf")
        self.task = None

    def get(self) -> dict:
        """{name: tenant dict} as last read; starts a refresh when due (never waits for it)."""
        if time.monotonic() - self.last >= self.refresh_s and not (self.task and not self.task.done()):
            try:
                self.task = asyncio.get_running_loop().create_task(self.refresh())
                self.last = time.monotonic()
            except RuntimeError:  # no running loop (rendered outside the hub): keep what we know
                pass
        return self.tenants

    async def refresh(self):
        from tornado.httpclient import AsyncHTTPClient

        try:
            r = await AsyncHTTPClient().fetch(self.api_url + "tenants", request_timeout=10,
                                              headers={"Authorization": f"token {self.token}"})
            data = json.loads(r.body)
            self.tenants = {t["name"]: t for t in data.get("tenants", [])}
        except Exception:  # noqa: BLE001 - hints only; the service checks everything again on Start
            pass


class HomeHints:
    """Template variable ``aistack_home`` (called with the user): what the home and spawn pages show.

    ``no_tenant``: the user is in no tenant (no JupyterHub group that is a tenant); ``contacts``: whom to
    ask (platform admins, and the admins of every tenant); ``tenants``: per tenant of the user, its per-user
    server limit and the servers the user runs or starts there; ``can_start``: whether any tenant lets the
    user start one more server; ``message``: the sentence to show instead of (or above) Start."""

    def __init__(self, directory: TenantDirectory, admin_users):
        self.directory = directory
        self.admin_users = sorted(admin_users or ())

    def __call__(self, user) -> dict:
        if not user:
            return {}
        tenants = self.directory.get()
        groups = sorted(g.name for g in getattr(user, "groups", []) or [])
        mine = [g for g in groups if g in tenants]
        tenant_admins = sorted({a for t in tenants.values() for a in t.get("admins") or ()})
        contacts = self.admin_users + [a for a in tenant_admins if a not in self.admin_users]
        running: dict[str, int] = {}
        for spawner in getattr(user, "spawners", {}).values():
            if getattr(spawner, "active", False) and getattr(spawner, "tenant", ""):
                running[spawner.tenant] = running.get(spawner.tenant, 0) + 1
        limits = []
        for name in mine:
            q = (tenants[name].get("quotas") or {}).get("any") or {}
            limit = q.get("max_servers_per_user")
            limits.append({"tenant": name, "limit": limit, "running": running.get(name, 0),
                           "full": limit is not None and running.get(name, 0) >= limit})
        can_start = bool(mine) and not all(t["full"] for t in limits)
        if not mine:
            who = ", ".join(contacts) or "an administrator"
            message = (f"You are in no tenant yet, so you cannot start a server. Ask {who} to add you to your "
                       f"team's tenant; then reload this page.")
        elif not can_start:
            message = ("You run as many servers as your tenants allow (" + "; ".join(
                f"{t['tenant']}: {t['running']} of {t['limit']}" for t in limits)
                + "). Stop one of them before starting another.")
        else:
            message = ""
        pending = []
        if getattr(user, "admin", False) and _native:
            try:
                pending = _native[0].pending_signups()
            except Exception:  # noqa: BLE001 - a hint only; the admin page and /hub/authorize list them too
                pending = []
        return {"no_tenant": not mine, "tenants": limits, "contacts": contacts, "can_start": can_start,
                "message": message, "pending_signups": pending}
