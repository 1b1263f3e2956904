"""Base handler of the aistack API: JupyterHub token auth with scopes, request models, the error map.

Auth: ``Authorization: token <JupyterHub token>``. The token is resolved by JupyterHub's ``HubAuth`` on
every request (``Limits.auth_cache_s``, default 0: a revoked token or a removed membership is refused on the
next request; docs/limits.md) and must carry the service's access scope (``access:services!service=aistack``, from
``$JUPYTERHUB_OAUTH_ACCESS_SCOPES``). The hub itself calls with the service's own API token, compared in
constant time without a round trip (docs/architecture.md, "Hub <-> service").

A handler: a request model (``body``/``submission``/``query``), one service method, the answer; what the
method raises is answered by ``errors.answer``.
"""
from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass, field

from tornado.web import HTTPError, RequestHandler

from aistack_hub.services import notebooks
from aistack_hub.services.bundle import Services
from aistack_hub.services.context import Identity
from aistack_hub.services.errors import DomainError
from aistack_hub.services.limits import mib
from aistack_hub.services.models import parse

from .errors import APIError, answer

INLINE_JSON_BYTES = 256 * 1024  # larger bodies are decoded in a worker process (json.loads holds the GIL)
# Submissions up to this size are validated and inspected in a thread: milliseconds, and never a wait for
# worker processes that are still starting (the first "Run as job" after a start answered in 7-20 s).
THREAD_SUBMISSION_BYTES = 64 * 1024


@dataclass
class APISettings:
    """What the handlers share besides the services (built by aistack_hub.service)."""

    services: Services
    hub_auth: object = None
    hub_token: str = ""
    user_groups_cache: dict = field(default_factory=dict)
    token_cache: dict = field(default_factory=dict)  # token -> (checked at, model), Limits.auth_cache_s


class APIHandler(RequestHandler):
    """JSON API handler; subclasses use ``self.identity`` (set in prepare) and ``self.services``."""

    auth_required = True

    def initialize(self, api: APISettings):
        self.api = api
        self.services = api.services
        self.identity: Identity | None = None

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self):
        return  # token auth only, no cookies

    def log_exception(self, typ, value, tb):
        if isinstance(value, DomainError):
            return  # an answer, not a fault (the request log has the status)
        super().log_exception(typ, value, tb)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = answer(exc, status_code, self._reason)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    # --------------------------------------------------------------------- auth
    def _token(self) -> str | None:
        parts = self.request.headers.get("Authorization", "").split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
            return parts[1].strip()
        return None

    async def prepare(self):
        if not self.auth_required:
            return
        token = self._token()
        if not token:
            raise APIError(401, "unauthorized", "send a JupyterHub token: 'Authorization: token <token>'")
        if self.api.hub_token and hmac.compare_digest(token.encode(), self.api.hub_token.encode()):
            self.identity = Identity(name="hub", kind="hub", admin=True)
            return
        auth = self.api.hub_auth
        if auth is None:
            raise APIError(403, "forbidden", "this token is not valid here")
        model = await self._check_token(auth, token)
        if not model:
            raise APIError(403, "forbidden", "invalid or expired token")
        required = auth.access_scopes
        if required and not auth.check_scopes(required, model):
            raise APIError(403, "forbidden", f"the token lacks the scope {' or '.join(sorted(required))}")
        groups = model.get("groups")
        if groups is None and model.get("kind", "user") == "user":
            groups = await self._user_groups(model["name"])
        self.identity = Identity(name=model["name"], kind=model.get("kind", "user"), admin=bool(model.get("admin")),
                                 groups=frozenset(groups or ()), scopes=frozenset(model.get("scopes") or ()))

    async def _check_token(self, auth, token: str) -> dict | None:
        """The token's model from the hub (HubAuth's own 60 s cache bypassed: revocation must take effect
        within ``Limits.auth_cache_s``)."""
        ttl = self.services.ctx.limits.auth_cache_s
        cache = self.api.token_cache
        now = time.monotonic()
        cached = cache.get(token) if ttl > 0 else None
        if cached and now - cached[0] < ttl:
            return cached[1]
        try:
            model = await auth.user_for_token(token, use_cache=False, sync=False)
        except HTTPError as e:
            if e.status_code in (401, 403, 404):
                model = None
            else:
                raise APIError(503, "hub_unavailable", "JupyterHub could not check the token; try again") from e
        if ttl > 0 and model:
            if len(cache) > 10000:  # bounded: drop what expired
                for k in [k for k, (at, _) in cache.items() if now - at >= ttl]:
                    cache.pop(k, None)
            cache[token] = (now, model)
        return model

    async def _user_groups(self, name: str) -> list:
        """The user's groups (= tenants) via the hub API with the service's token (cached as tokens are)."""
        ttl = self.services.ctx.limits.auth_cache_s
        cache = self.api.user_groups_cache
        cached = cache.get(name) if ttl > 0 else None
        if cached and time.monotonic() - cached[0] < ttl:
            return cached[1]
        groups = await user_groups(self.api.hub_auth, name)
        if ttl > 0:
            cache[name] = (time.monotonic(), groups)
        return groups

    # -------------------------------------------------------------------- input
    def _raw_body(self, what: str = "the body") -> bytes:
        body = self.request.body or b""
        limit = self.services.ctx.max_body_bytes
        if len(body) > limit:
            raise APIError(413, "too_large", f"{what} is too large ({mib(len(body))} > {mib(limit)} limit, "
                           "AIStackService.max_body_bytes)")
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype.startswith("multipart/"):
            raise APIError(415, "unsupported_media_type", "send a JSON body (application/json)")
        if not body.strip():
            raise APIError(400, "bad_request", "a JSON object body is required")
        return body

    async def json_object(self) -> dict:
        body = self._raw_body()
        if len(body) <= INLINE_JSON_BYTES:
            return notebooks.decode_object(body)
        return await self.services.ctx.offload.cpu(notebooks.decode_object, body)

    async def body(self, model):
        """The body as a validated ``model``."""
        return parse(model, await self.json_object())

    async def submission(self, model):
        """A body with a notebook (POST jobs, jobs/inspect) as a validated ``model``: decoded, the notebook
        validated and inspected in a worker process."""
        body, ctx = self._raw_body(), self.services.ctx
        work = ctx.offload.io if len(body) <= THREAD_SUBMISSION_BYTES else ctx.offload.cpu
        return parse(model, await work(notebooks.decode_submission, body, ctx.limits.max_notebook_bytes))

    def query(self, model, lists: tuple = ()):
        """The query arguments as a validated ``model`` (``lists``: arguments that may repeat or hold a
        comma-separated list); empty values count as absent."""
        data = {}
        for name, raw in self.request.query_arguments.items():
            values = [v.decode("utf-8", "replace") for v in raw]
            if name in lists:
                data[name] = [x for v in values for x in v.split(",") if x]
            elif values[-1] != "":
                data[name] = values[-1]
        return parse(model, data)


async def user_groups(auth, name: str) -> list:
    """Groups of a user, asked of the hub with the service's token."""
    from urllib.parse import quote

    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    if auth is None or not auth.api_token:
        return []
    url = auth.api_url.rstrip("/") + "/users/" + quote(name, safe="")
    try:
        resp = await AsyncHTTPClient().fetch(url, headers={"Authorization": f"token {auth.api_token}"})
    except (HTTPClientError, OSError):
        return []
    return list(json.loads(resp.body).get("groups") or [])
