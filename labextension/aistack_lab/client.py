"""Forwarding to the hub's ``aistack`` service with this server's JupyterHub token."""

import json
import os
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Configurable


class ServiceError(Exception):
    """A failure to reach the service, reported to the browser as a JSON error."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AistackServiceClient(Configurable):
    """Talks to ``{hub}/services/aistack/api/`` on behalf of the user who owns this server."""

    service_url = Unicode(
        help="""URL of the aistack service, e.g. http://127.0.0.1:8000/services/aistack/ (its API is below,
        at api/; a URL already ending in /api/ is taken as the API's).

        Defaults to $AISTACK_SERVICE_URL (the hub sets it for the servers it spawns). When neither is
        set, the URL is derived from the browser's request: same scheme and host as the proxy that
        served JupyterLab, plus $JUPYTERHUB_BASE_URL + services/aistack/api/.""",
    ).tag(config=True)

    @default("service_url")
    def _service_url_default(self):
        return os.environ.get("AISTACK_SERVICE_URL", "")

    api_token = Unicode(
        help="JupyterHub token sent to the service. Defaults to this server's $JUPYTERHUB_API_TOKEN.",
    ).tag(config=True)

    @default("api_token")
    def _api_token_default(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    hub_base_url = Unicode(
        help="The hub's base URL path (defaults to $JUPYTERHUB_BASE_URL, else '/').",
    ).tag(config=True)

    @default("hub_base_url")
    def _hub_base_url_default(self):
        return os.environ.get("JUPYTERHUB_BASE_URL", "/")

    request_timeout = Float(
        60.0, help="Seconds to wait for the service to answer one request."
    ).tag(config=True)

    max_body_bytes = Integer(
        64 * 1024 * 1024,
        help="Largest response accepted from the service (output notebooks can be big).",
    ).tag(config=True)

    _http = None

    def _http_client(self):
        # an own client: the shared one's max_body_size (100 MB default) is not ours to change
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True, max_body_size=self.max_body_bytes)
        return self._http

    def base_url(self, request=None):
        """The service API base URL, ending in '/'."""
        url = self.service_url
        if not url:
            if request is None:
                raise ServiceError(502, "service_unknown", "AISTACK_SERVICE_URL is not set")
            # behind configurable-http-proxy the browser's Host is the proxy, which also routes
            # /services/aistack/ to the service
            prefix = self.hub_base_url.rstrip("/") + "/services/aistack/api/"
            url = f"{request.protocol}://{request.host}{prefix}"
        url = url if url.endswith("/") else url + "/"
        return url if url.endswith("/api/") else url + "api/"

    async def fetch(self, method, path, *, query=None, body=None, request=None):
        """Send one request to the service; returns ``(status, content_type, body_bytes)``.

        ``body`` is bytes (passed through) or a JSON-serialisable object. The service's 4xx answers
        come back as they are, so the browser sees the service's own error messages.
        """
        url = self.base_url(request) + path.lstrip("/")
        if query:
            url += "?" + (query if isinstance(query, str) else urlencode(query, doseq=True))
        headers = {"Authorization": f"token {self.api_token}", "Accept": "application/json"}
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        if body is not None:
            headers["Content-Type"] = "application/json"
        if method in ("POST", "PUT", "PATCH") and body is None:
            body = b""
        req = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            request_timeout=self.request_timeout,
            follow_redirects=False,
        )
        try:
            resp = await self._http_client().fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise ServiceError(502, "service_unreachable", f"cannot reach the aistack service at {url}: {e}")
        if resp.code == 599:
            raise ServiceError(
                502, "service_unreachable", f"cannot reach the aistack service at {url}: {resp.error}"
            )
        return resp.code, resp.headers.get("Content-Type", "application/json"), resp.body or b""

    async def fetch_json(self, method, path, **kwargs):
        """Like :meth:`fetch`, but decodes JSON and raises :class:`ServiceError` on a non-2xx answer."""
        status, _ctype, data = await self.fetch(method, path, **kwargs)
        try:
            payload = json.loads(data or b"null")
        except ValueError:
            payload = None
        if status >= 400:
            if isinstance(payload, dict):
                raise ServiceError(status, payload.get("error", "error"), payload.get("message", ""))
            raise ServiceError(status if status < 500 else 502, "service_error", data[:500].decode(errors="replace"))
        return payload
