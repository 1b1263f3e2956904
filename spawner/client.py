"""The hub's client of the ``aistack`` service REST API (the spawner's only way to the scheduler).

One JSON request per call with the hub's token (the service's own ``api_token``, an admin identity).
Transport failures become a 503 ``web.HTTPError`` (JupyterHub shows it on the spawn page); any HTTP answer
is returned as ``(status, parsed body)`` for the caller to interpret.
"""
from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest


def message(data) -> str:
    """The human message of a service answer (its error body, or the body itself)."""
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


class ServiceClient:
    """REST client of the aistack service: ``base_url`` like ``http://127.0.0.1:8790/services/aistack/api/``."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self.base_url = base_url
        self.token = token
        self.timeout = timeout

    def url(self, path: str, query: dict | None = None) -> str:
        if not self.base_url:
            raise web.HTTPError(500, "aistack_api_url is not configured (hubconfig.configure sets it)")
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        return url + ("?" + urlencode(query) if query else "")

    async def call(self, method: str, path: str, body=None, query: dict | None = None,
                   timeout: float | None = None) -> tuple[int, object]:
        """One JSON request; returns (status, parsed body)."""
        req = HTTPRequest(
            self.url(path, query),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}),
            request_timeout=timeout or self.timeout,
            allow_nonstandard_methods=True,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except OSError as e:
            raise web.HTTPError(503, f"the aistack service cannot be reached: {e}") from e
        if resp.code == 599:
            raise web.HTTPError(503, f"the aistack service cannot be reached: {resp.error}")
        try:
            data = json.loads(resp.body) if resp.body else None
        except ValueError:
            data = {"message": resp.body.decode(errors="replace")[:500]}
        return resp.code, data

    # -- the calls the spawner makes --------------------------------------------------------------

    async def profiles(self, tenant: str, user: str) -> list[dict]:
        """The profiles ``user`` may use in ``tenant`` (free capacity, quota left); [] when none may."""
        code, data = await self.call("GET", "profiles", query={"tenant": tenant, "user": user})
        if code in (400, 403, 404):
            return []  # not a tenant, or the user may not use it
        if code != 200:
            raise web.HTTPError(502, f"aistack service: GET profiles answered {code}: {message(data)}")
        items = data.get("profiles", data.get("items")) if isinstance(data, dict) else data
        return list(items or [])

    async def tenant(self, name: str) -> dict | None:
        """The tenant's settings as the database holds them now (None: no such tenant).

        Read live, never cached across checks: an admin's edit (idle time-out, namespace, quota) takes
        effect on the next read without a hub restart."""
        code, data = await self.call("GET", f"tenants/{quote(name, safe='')}")
        if code == 404:
            return None
        if code != 200 or not isinstance(data, dict):
            raise web.HTTPError(502, f"aistack service: GET tenants/{name} answered {code}: {message(data)}")
        return data

    async def usage(self) -> dict | None:
        code, data = await self.call("GET", "usage")
        return data if code == 200 and isinstance(data, dict) else None

    async def create_allocation(self, body: dict, timeout: float) -> tuple[int, object]:
        return await self.call("POST", "allocations", body, timeout=timeout)

    async def allocation(self, alloc_id) -> tuple[int, object]:
        return await self.call("GET", f"allocations/{quote(str(alloc_id), safe='')}")

    async def release(self, alloc_id) -> tuple[int, object]:
        return await self.call("DELETE", f"allocations/{quote(str(alloc_id), safe='')}")
