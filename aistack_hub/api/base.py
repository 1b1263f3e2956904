"""Base handler of the aistack API: JupyterHub token auth with scopes, JSON errors, body limits.

Auth: ``Authorization: token <JupyterHub token>``. The token is resolved by JupyterHub's ``HubAuth``
(cached) and must carry the service's access scope (``access:services!service=aistack``, from
``$JUPYTERHUB_OAUTH_ACCESS_SCOPES``). The hub itself calls with the service's own API token, compared in
constant time without a round trip (docs/architecture.md, "Hub <-> service").

Who sees what: a user their own jobs; a tenant admin (in the tenant's ``admins``) their tenant's; a JupyterHub
admin, or a token with the ``admin:users`` scope, everything.
"""
from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass, field

from tornado.web import HTTPError, RequestHandler


class APIError(HTTPError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message


@dataclass
class Identity:
    name: str
    kind: str = "user"  # user | service | hub
    admin: bool = False
    groups: frozenset = frozenset()
    scopes: frozenset = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.kind == "hub" or self.admin or "admin:users" in self.scopes


@dataclass
class ServiceContext:
    """What the handlers share (built by aistack_hub.service)."""

    db: object
    queue: object
    deployment: object
    executor: object
    hub_auth: object = None
    hub_token: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    notebook_root: str = ""  # template with {user}: where path submissions are read ('' = not allowed)
    validate_kernels: bool = True
    job_token_secret: str = ""
    jobs_dir: str = ""
    user_groups_cache: dict = field(default_factory=dict)
    view_cache: dict = field(default_factory=dict)

    def tenant_admins(self, tenant: str) -> frozenset:
        t = self.tenant(tenant)
        return t.admins if t is not None else frozenset()

    def tenant(self, name: str):
        from aistack_hub.config import load_tenant

        return load_tenant(self.db, name)

    def offered_profile(self, slug, tenant: str):
        """The profile ``slug`` if the tenant may use it; else a 400 (unknown) or 403 (not offered)."""
        if not isinstance(slug, str):
            raise APIError(400, "bad_request", "'profile' (a profile slug, see GET profiles) is required")
        try:
            profile = self.deployment.profiles.get(slug)
        except KeyError:
            raise APIError(400, "unknown_profile", f"no profile {slug!r}") from None
        if not profile.offered_to(tenant):
            raise APIError(403, "forbidden", f"profile {slug!r} is not offered to tenant {tenant!r}")
        return profile


class APIHandler(RequestHandler):
    """JSON API handler; subclasses use ``self.identity`` (set in prepare) and ``self.ctx``."""

    auth_required = True

    def initialize(self, ctx: ServiceContext):
        self.ctx = ctx
        self.identity: Identity | None = None

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self):
        return  # token auth only, no cookies

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        code = (exc.code if isinstance(exc, APIError) else None) or {
            400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            409: "conflict", 413: "too_large", 415: "unsupported_media_type",
        }.get(status_code, "error" if status_code < 500 else "internal_error")
        message = getattr(exc, "message", None) or getattr(exc, "log_message", None) or self._reason
        if status_code >= 500 and not isinstance(exc, APIError):
            message = "internal error (see the service log)"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": code, "message": message}))

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    # --------------------------------------------------------------------- auth
    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        parts = header.split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
            return parts[1].strip()
        return None

    async def prepare(self):
        if not self.auth_required:
            return
        token = self._token()
        if not token:
            raise APIError(401, "unauthorized", "send a JupyterHub token: 'Authorization: token <token>'")
        if self.ctx.hub_token and hmac.compare_digest(token.encode(), self.ctx.hub_token.encode()):
            self.identity = Identity(name="hub", kind="hub", admin=True)
            return
        if self.ctx.hub_auth is None:
            raise APIError(403, "forbidden", "this token is not valid here")
        try:
            model = await self.ctx.hub_auth.user_for_token(token, sync=False)
        except HTTPError as e:
            if e.status_code in (401, 403, 404):
                model = None
            else:
                raise APIError(503, "hub_unavailable", "JupyterHub could not check the token; try again") from e
        if not model:
            raise APIError(403, "forbidden", "invalid or expired token")
        scopes = frozenset(model.get("scopes") or ())
        required = self.ctx.hub_auth.access_scopes
        if required and not self.ctx.hub_auth.check_scopes(required, model):
            raise APIError(403, "forbidden", f"the token lacks the scope {' or '.join(sorted(required))}")
        groups = model.get("groups")
        if groups is None and model.get("kind", "user") == "user":
            groups = await self._user_groups(model["name"])
        self.identity = Identity(name=model["name"], kind=model.get("kind", "user"), admin=bool(model.get("admin")),
                                 groups=frozenset(groups or ()), scopes=scopes)

    async def _user_groups(self, name: str) -> list:
        """The user's groups (= tenants) via the hub API with the service's token (cached 60 s)."""
        cached = self.ctx.user_groups_cache.get(name)
        if cached and time.time() - cached[0] < 60:
            return cached[1]
        groups = await user_groups(self.ctx, name)
        self.ctx.user_groups_cache[name] = (time.time(), groups)
        return groups

    # -------------------------------------------------------------------- input
    def json_body(self, required: bool = True) -> dict:
        body = self.request.body or b""
        if len(body) > self.ctx.max_body_bytes:
            raise APIError(413, "too_large", f"the body is larger than {self.ctx.max_body_bytes} bytes")
        if not body.strip():
            if required:
                raise APIError(400, "bad_request", "a JSON object body is required")
            return {}
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype.startswith("multipart/"):
            raise APIError(415, "unsupported_media_type", "send a JSON body (application/json)")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, "bad_json", f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise APIError(400, "bad_request", "the body must be a JSON object")
        return data

    def int_arg(self, name: str, default=None, minimum=None, maximum=None):
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise APIError(400, "bad_request", f"query argument {name!r} must be an integer") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise APIError(400, "bad_request", f"query argument {name!r} must be within [{minimum}, {maximum}]")
        return value

    def require_admin(self):
        if not self.identity.is_admin:
            raise APIError(403, "forbidden", "only JupyterHub admins may do this")

    def admin_tenants(self) -> set:
        """Tenants this identity administers."""
        from aistack_hub.config import load_tenants

        if self.identity.is_admin:
            return {t.name for t in load_tenants(self.ctx.db)}
        return {t.name for t in load_tenants(self.ctx.db) if self.identity.name in t.admins}


async def user_groups(ctx: ServiceContext, name: str) -> list:
    """Groups of a user, asked of the hub with the service's token."""
    import json as _json
    from urllib.parse import quote

    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    auth = ctx.hub_auth
    if auth is None or not auth.api_token:
        return []
    url = auth.api_url.rstrip("/") + "/users/" + quote(name, safe="")
    try:
        resp = await AsyncHTTPClient().fetch(url, headers={"Authorization": f"token {auth.api_token}"})
    except (HTTPClientError, OSError):
        return []
    return list(_json.loads(resp.body).get("groups") or [])
