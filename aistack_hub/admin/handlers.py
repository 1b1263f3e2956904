"""Tornado handlers of the hub admin page (mounted by the aistack service under its prefix).

Authentication is JupyterHub OAuth (``HubOAuthenticated``; the service's app provides ``hub_auth`` in its
settings, or the ``HubOAuth`` singleton is used). Every read and write goes through the aistack REST API
with the viewer's own token, so the page shows and changes exactly what the viewer may; tenant members
(JupyterHub groups) are changed with the service's token after checking the viewer administers the tenant.
"""
from __future__ import annotations

import functools
import json
import os
from urllib.parse import quote

import jinja2
from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from .dashboard import ChartJSHandler, as_json, dashboard_data, gpu_policies, partials, template_env
from .data import APIError, Endpoints, call, gather, gpu_hours_svg, whoami
from .oauth import SharedStateHubOAuth

HERE = os.path.dirname(os.path.abspath(__file__))
# Our templates, then JupyterHub's: admin.html extends the hub's page.html (its look, Bootstrap 5, dark mode)
_env = template_env()


def gpus(milli) -> str:
    return "-" if milli is None or isinstance(milli, jinja2.Undefined) else f"{int(milli) / 1000:g}"


def gib(mib) -> str:
    return "-" if mib is None or isinstance(mib, jinja2.Undefined) else f"{int(mib) / 1024:g}"


_env.filters["gpus"] = gpus
_env.filters["gib"] = gib
_env.filters["cpus"] = gpus


def keep_input(method):
    """A refused edit (4xx but 403) shows the page again with the form as it was sent and what is wrong
    next to it, instead of a dead-end error page."""
    @functools.wraps(method)
    async def wrapper(self, *args):
        try:
            return await method(self, *args)
        except web.HTTPError as e:
            if not 400 <= e.status_code < 500 or e.status_code == 403 or self._finished:
                raise
            message = e.log_message or e.reason or f"refused ({e.status_code})"
            kept = {"action": self.request.path, "message": message,
                    "form": {k: self.get_body_argument(k, "") for k in self.request.body_arguments}}
            self.set_status(e.status_code)
            await self.finish_page(error=message, kept=kept)
    return wrapper


class AdminBase(HubOAuthenticated, web.RequestHandler):
    """Common parts: the viewer's token, the endpoints, errors as pages."""

    @property
    def hub_auth(self):
        # The callback (oauth_callback, admin.oauth.OAuthCallbackHandler) uses this singleton too; its
        # login state travels in the signed state, so any replica completes a login another began.
        return SharedStateHubOAuth.instance()

    @hub_auth.setter
    def hub_auth(self, value):  # HubOAuthenticated's initialize may set it
        pass

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.from_settings(self.settings)

    def viewer_token(self) -> str:
        token = self.hub_auth.get_token(self)
        if not token:
            raise web.HTTPError(403, "no JupyterHub token for this session")
        return token

    def base(self) -> str:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/aistack/")
        return prefix.rstrip("/") + "/admin/"

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_env.get_template("error.html").render(status=status_code, message=message, base=self.base()))

    def render_page(self, data: dict, dash: dict, notice="", error="", kept=None) -> str:
        return _env.get_template("admin.html").render(
            **data, base=self.base(), plot=gpu_hours_svg(data["gpu_hours"]), xsrf=self.xsrf_form_html(),
            notice=notice, error=error, kept=kept or {}, dashboard_json=as_json(dash), partials=partials(),
            user={"name": data["me"].get("name"), "json_escaped_name": json.dumps(data["me"].get("name"))[1:-1]})

    async def finish_page(self, notice="", error="", kept=None):
        try:
            data = await gather(self.endpoints, self.viewer_token())
        except APIError as e:
            raise web.HTTPError(e.status if 400 <= e.status < 500 else 502, e.message) from e
        dash = await dashboard_data(self.endpoints.api, self.viewer_token(), bool(data["me"].get("admin")),
                                    data["gpu_hours"])
        data["gpu_policies"] = await gpu_policies(self.endpoints.api, self.viewer_token(),
                                                  [t["name"] for t in data["tenants"]])
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.render_page(data, dash, notice, error, kept))

    async def api(self, method, path, body=None, query=None):
        try:
            return await call(self.endpoints.api, self.viewer_token(), method, path, body, query)
        except APIError as e:
            raise web.HTTPError(e.status if 400 <= e.status < 500 else 502, e.message) from e

    async def hub(self, method, path, body=None, ok=()):
        """JupyterHub's API with the service's token; a status in ``ok`` answers None (e.g. 404: absent)."""
        ep = self.endpoints
        try:
            return await call(ep.hub_api, ep.service_token, method, path, body)
        except APIError as e:
            if e.status in ok:
                return None
            raise web.HTTPError(e.status if 400 <= e.status < 500 else 502, f"JupyterHub: {e.message}") from e

    def back(self, notice: str, tenant: str | None = None):
        """Back to the page after a change, with what happened (and at the tenant's section)."""
        self.redirect(f"{self.base()}?notice=" + quote(notice) + (f"#tenant-{quote(tenant)}" if tenant else ""))

    async def require_tenant_admin(self, tenant: str) -> dict:
        try:
            me = await whoami(self.endpoints, self.viewer_token())
        except APIError as e:
            raise web.HTTPError(e.status if 400 <= e.status < 500 else 502, e.message) from e
        if me.get("admin"):
            return me
        if any(t.get("name") == tenant and t.get("admin") for t in me.get("tenants", [])):
            return me
        raise web.HTTPError(403, f"{me.get('name')} does not administer tenant {tenant}")


class AdminPageHandler(AdminBase):
    @web.authenticated
    async def get(self):
        await self.finish_page(notice=self.get_argument("notice", ""), error=self.get_argument("error", ""))


def _number(form, name, scale: float, allow_empty=True):
    raw = (form.get(name) or "").strip()
    if raw == "":
        if allow_empty:
            return None
        raise web.HTTPError(400, f"{name} is required")
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPError(400, f"{name}: {raw!r} is not a number") from None
    if value < 0:
        raise web.HTTPError(400, f"{name} must not be negative")
    return int(round(value * scale))


class TenantQuotaHandler(AdminBase):
    """Edit a tenant's quota and settings in place (admins only; the API enforces it)."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        form = {k: self.get_body_argument(k, "") for k in (
            "resource_group", "gpus", "cpus", "memory_gib", "max_servers_per_user", "max_running_jobs",
            "max_queued_jobs", "idle_timeout_min", "weight", "high_cap_pct")}
        group = form["resource_group"] or "any"
        quota = {
            "gpu_milli": _number(form, "gpus", 1000),
            "cpu_milli": _number(form, "cpus", 1000),
            "memory_mib": _number(form, "memory_gib", 1024),
            "max_servers_per_user": _number(form, "max_servers_per_user", 1),
            "max_running_jobs": _number(form, "max_running_jobs", 1),
            "max_queued_jobs": _number(form, "max_queued_jobs", 1),
        }
        current = await self.api("GET", f"tenants/{quote(tenant, safe='')}")
        quotas = dict(current.get("quotas") or {})
        quotas[group] = {**quotas.get(group, {}), **quota, "resource_group": group}
        patch = {"quotas": quotas}
        idle = _number(form, "idle_timeout_min", 60)
        patch["idle_timeout_s"] = idle if idle else None
        if form["weight"].strip():
            try:
                patch["weight"] = float(form["weight"])
            except ValueError:
                raise web.HTTPError(400, f"weight: {form['weight']!r} is not a number") from None
        cap = _number(form, "high_cap_pct", 1)
        if cap is not None and cap > 100:
            raise web.HTTPError(400, "high-priority cap: a percentage from 0 to 100")
        patch["max_high_share"] = None if cap is None else cap / 100
        await self.api("PATCH", f"tenants/{quote(tenant, safe='')}", patch)
        self.back(f"quota of {tenant} saved", tenant)


def _name(handler, field: str) -> str:
    value = handler.get_body_argument(field, "").strip()
    if not value:
        raise web.HTTPError(400, f"{field.replace('_', ' ')} is required")
    return value


class TenantCreateHandler(AdminBase):
    """Create a tenant (admins): its row in the service, and its JupyterHub group. Also "make this group a
    tenant" for a group made in JupyterHub's own admin page (the group and its members stay)."""

    @web.authenticated
    @keep_input
    async def post(self):
        name = _name(self, "name")
        try:
            await self.api("GET", f"tenants/{quote(name, safe='')}")
        except web.HTTPError as e:
            if e.status_code != 404:
                raise
        else:
            raise web.HTTPError(409, f"a tenant {name!r} exists already")
        # no quota yet (unlimited within the pool): the page opens at the new tenant to set one
        await self.api("PUT", f"tenants/{quote(name, safe='')}", {"name": name})
        await self.hub("POST", f"groups/{quote(name, safe='')}", ok=(409,))
        self.back(f"tenant {name} created: set its quota below and add members", name)


class TenantRenameHandler(AdminBase):
    """Rename a tenant without queued or running work (admins): the row, then the JupyterHub group (a new
    group with the same members; the old one deleted)."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        new = _name(self, "new_name")
        if new == tenant:
            return self.back(f"{tenant} keeps its name", tenant)
        await self.api("PATCH", f"tenants/{quote(tenant, safe='')}", {"name": new})
        old = await self.hub("GET", f"groups/{quote(tenant, safe='')}", ok=(404,))
        users = sorted((old or {}).get("users") or [])
        await self.hub("POST", f"groups/{quote(new, safe='')}", ok=(409,))
        if users:
            await self.hub("POST", f"groups/{quote(new, safe='')}/users", {"users": users})
        if old:
            await self.hub("DELETE", f"groups/{quote(tenant, safe='')}", ok=(404,))
        self.back(f"tenant {tenant} renamed to {new}", new)


class TenantDeleteHandler(AdminBase):
    """Delete a tenant without queued or running work (admins), and its JupyterHub group."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        await self.api("DELETE", f"tenants/{quote(tenant, safe='')}")
        await self.hub("DELETE", f"groups/{quote(tenant, safe='')}", ok=(404,))
        self.back(f"tenant {tenant} deleted")


class TenantMembersHandler(AdminBase):
    """Add or remove a member (JupyterHub group membership); tenant admins and admins. Someone who has not
    logged in yet (approved, or not even signed up: LDAP) gets their JupyterHub user created first, so they
    can start a server on their first login."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        await self.require_tenant_admin(tenant)
        # JupyterHub's authenticators store names lower-cased (Authenticator.normalize_username)
        user = self.get_body_argument("user", "").strip().lower()
        action = self.get_body_argument("action", "add")
        if not user:
            raise web.HTTPError(400, "user is required")
        if action not in ("add", "remove"):
            raise web.HTTPError(400, "action must be add or remove")
        created = False
        group = f"groups/{quote(tenant, safe='')}"
        if action == "add":
            if await self.hub("GET", f"users/{quote(user, safe='')}", ok=(404,)) is None:
                await self.hub("POST", f"users/{quote(user, safe='')}", ok=(409,))
                created = True
            if await self.hub("GET", group, ok=(404,)) is None:  # a tenant made through the API: no group yet
                await self.hub("POST", group, ok=(409,))
            await self.hub("POST", f"{group}/users", {"users": [user]})
        else:
            await self.hub("DELETE", f"{group}/users", {"users": [user]})
        verb = "added to" if action == "add" else "removed from"
        note = " (their JupyterHub user was created: they sign in with their own account)" if created else ""
        self.back(f"{user} {verb} {tenant}{note}", tenant)


GRANTS = {"admin": ("admins", "administers"), "high": ("high_users", "may use high priority in"),
          "emergency": ("emergency_users", "may use emergency priority in")}


class TenantGrantHandler(AdminBase):
    """Grant or revoke, per user and tenant: tenant admin, high priority, emergency priority (admins; through
    PATCH tenants, which enforces it)."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        user = _name(self, "user")
        grant = self.get_body_argument("grant", "")
        if grant not in GRANTS:
            raise web.HTTPError(400, f"grant must be one of {sorted(GRANTS)}")
        value = self.get_body_argument("value", "1") == "1"
        field, says = GRANTS[grant]
        current = await self.api("GET", f"tenants/{quote(tenant, safe='')}")
        users = set(current.get(field) or [])
        users = users | {user} if value else users - {user}
        await self.api("PATCH", f"tenants/{quote(tenant, safe='')}", {field: sorted(users)})
        self.back(f"{user} {'now' if value else 'no longer'} {says} {tenant}", tenant)


class GPUIdlePolicyHandler(AdminBase):
    """The tenant's GPU idle-culling policy (tenant admins and admins; PUT monitoring/policies enforces it).
    Empty fields: the platform's default (``Monitor.idle_*``)."""

    @web.authenticated
    @keep_input
    async def post(self, tenant):
        form = {k: self.get_body_argument(k, "").strip() for k in (
            "enabled", "threshold_pct", "idle_min", "warn_min", "max_keep_hours")}
        if form["enabled"] not in ("", "on", "off"):
            raise web.HTTPError(400, "enabled: choose default, on or off")
        body = {"enabled": None if not form["enabled"] else form["enabled"] == "on",
                "threshold_pct": form["threshold_pct"] or None, "max_keep_hours": form["max_keep_hours"] or None}
        for field, key in (("idle_min", "idle_s"), ("warn_min", "warn_s")):
            minutes = _number(form, field, 60)
            body[key] = minutes
        await self.api("PUT", f"monitoring/policies/{quote(tenant, safe='')}", body)
        self.back(f"GPU idle policy of {tenant} saved", tenant)


class AdminStaticHandler(web.StaticFileHandler):
    def initialize(self, path=None, default_filename=None):
        super().initialize(path=os.path.join(HERE, "static"))


handlers = [
    (r"admin/?", AdminPageHandler),
    (r"admin/tenants", TenantCreateHandler),
    (r"admin/tenants/([^/]+)/quota", TenantQuotaHandler),
    (r"admin/tenants/([^/]+)/rename", TenantRenameHandler),
    (r"admin/tenants/([^/]+)/delete", TenantDeleteHandler),
    (r"admin/tenants/([^/]+)/members", TenantMembersHandler),
    (r"admin/tenants/([^/]+)/grants", TenantGrantHandler),
    (r"admin/tenants/([^/]+)/gpu-idle", GPUIdlePolicyHandler),
    (r"admin/static/lib/chart\.umd\.js", ChartJSHandler),  # Chart.js (dashboard.py)
    (r"admin/static/(.*)", AdminStaticHandler),
]
