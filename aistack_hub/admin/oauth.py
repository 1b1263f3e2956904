"""The admin page's OAuth login, shared by every service replica.

JupyterHub's ``HubOAuth`` keeps each login's state (where to go back to, which cookie holds it) in the
memory of the process that began the login; with two replicas the hub's redirect back may reach the other
one, which then knows nothing of it. Here the state travels inside the OAuth state value itself, which the
state cookie carries signed by the service's ``cookie_secret`` (shared by the replicas,
``AIStackService.cookie_secret``): the callback only trusts it once it equals that signed cookie.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler


def _safe_next(url) -> str | None:
    """A path on this host only: the state in a callback URL is not trusted before its cookie check."""
    if isinstance(url, str) and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return None


class SharedStateHubOAuth(HubOAuth):
    """``HubOAuth`` whose pending-login state is in the state value, not in one process's memory."""

    def generate_state(self, next_url=None, **extra_state):
        state = {**extra_state, "next_url": _safe_next(next_url)}
        payload = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        return f"{secrets.token_urlsafe(16)}.{payload}"

    def _decode_state(self, state_id, /):
        try:
            payload = str(state_id).split(".", 1)[1]
            state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError, binascii.Error):
            return {}
        if not isinstance(state, dict):
            return {}
        name = state.get("cookie_name")
        return {"next_url": _safe_next(state.get("next_url")),
                "cookie_name": name if isinstance(name, str) and name.startswith(self.state_cookie_name) else None}

    def clear_oauth_state(self, state_id):
        pass  # nothing kept here


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """JupyterHub's callback, with the shared-state ``HubOAuth`` (the admin pages use the same singleton)."""

    hub_auth_class = SharedStateHubOAuth
