"""The admin page's cookie-authenticated proxy for its browser-side parts (accounting.js, storage.js).

``{base}api-proxy/<path>?<query>`` (GET/POST/PUT/DELETE, JSON bodies) is forwarded to the service's own API
``<service>/api/<path>?<query>`` with the **viewer's** JupyterHub token (``AdminBase.viewer_token``), never
the service's: the forwarded-to API checks the scopes (users: their own, tenant admins: their tenants,
platform admins: all), so the proxy gives the browser nothing the viewer could not do with their own token.

- Only an allow-list of paths is forwarded (``ALLOWED``): ``accounting/...``, ``storage``,
  ``storage/<tenant>``, ``datasets``, ``datasets/<name>``, ``environments``, ``environments/<name>``;
  anything else (and ``.``/``..``/empty segments) answers 404 JSON with a message.
- Writes (POST/PUT/DELETE) of a cookie-authenticated viewer need the ``X-XSRFToken`` header (the value of
  the page's ``_xsrf`` input), checked by JupyterHub's XSRF check; without it: 403 JSON.
- Status, body, Content-Type, Content-Disposition (CSV downloads) and the paging headers (X-Total-Count,
  X-Next-Offset) pass through unchanged.
- Sizes: a request body over ``AIStackService.admin_proxy_max_body_bytes`` (default 1 MiB) is 413; the
  forwarded call times out after ``AIStackService.admin_proxy_timeout_s`` (default 60 s: 504). The service
  passes both traits in the application's settings.
- Non-blocking: tornado's ``AsyncHTTPClient``, as the rest of the admin page (``data.call``).
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .handlers import AdminBase

ALLOWED = re.compile(r"accounting/.+|(storage|datasets|environments)(/[^/]+)?")
PASSED_HEADERS = ("Content-Type", "Content-Disposition", "X-Total-Count", "X-Next-Offset")
WRITES = ("POST", "PUT", "DELETE")


def forwarded_path(path: str) -> str | None:
    """The API path to forward to (each segment quoted again), or None when it is not on the allow-list."""
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        return None
    if not ALLOWED.fullmatch(path):
        return None
    return "/".join(quote(s, safe="") for s in segments)


class APIProxyHandler(AdminBase):
    """``api-proxy/<path>``: the viewer's own API calls, from the page's scripts (see the module doc)."""

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "proxy", "message": message}))

    def check_xsrf_for_write(self):
        if self.request.method not in WRITES or getattr(self, "_token_authenticated", False):
            return
        if not self.request.headers.get("X-XSRFToken"):
            raise web.HTTPError(403, "a write through the admin page needs the X-XSRFToken header")
        self.check_xsrf_cookie()  # JupyterHub's check (raises 403 when the token does not match)

    @web.authenticated
    async def proxy(self, path: str):
        target = forwarded_path(path)
        if target is None:
            raise web.HTTPError(404, f"api-proxy forwards only accounting/, storage, datasets and environments "
                                     f"paths, not {path!r}")
        self.check_xsrf_for_write()
        limit = int(self.settings["admin_proxy_max_body_bytes"])
        body = self.request.body or b""
        if len(body) > limit:
            raise web.HTTPError(413, f"request body of {len(body)} bytes is over the proxy's limit of {limit}")
        headers = {"Authorization": f"token {self.viewer_token()}",
                   "Accept": self.request.headers.get("Accept", "application/json")}
        if self.request.method in ("POST", "PUT") or body:
            headers["Content-Type"] = self.request.headers.get("Content-Type", "application/json")
        url = self.endpoints.api + target + ("?" + self.request.query if self.request.query else "")
        timeout = float(self.settings["admin_proxy_timeout_s"])
        req = HTTPRequest(url, method=self.request.method, headers=headers,
                          body=body if self.request.method in ("POST", "PUT") or body else None,
                          request_timeout=timeout, follow_redirects=False, allow_nonstandard_methods=True)
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        if resp.code == 599:
            timed_out = "timeout" in str(resp.error).lower()
            raise web.HTTPError(504 if timed_out else 502, f"{self.request.method} {target}: {resp.error}")
        self.set_status(resp.code, resp.reason or None)
        for name in PASSED_HEADERS:
            value = resp.headers.get(name)
            if value is not None:
                self.set_header(name, value)
            else:
                self.clear_header(name)
        if resp.code in (204, 304):
            self.finish()
        else:
            self.finish(resp.body or b"")

    get = post = put = delete = proxy


handlers = [(r"admin/api-proxy/(.*)", APIProxyHandler)]
