"""Server slices that nothing holds: the service compares its allocations with the hub's servers.

The spawner releases a slice when its server stops (``stop``), ends by itself (``poll`` sees it gone) or
fails/cancels its start; this is the net under all of them, and what makes a hub restart or a service
restart safe: every ``interval_s`` (and on ``POST allocations/reconcile``, which ``aistack-hub up`` calls
once the hub is up) the service lists **every** active server of the hub, over all pages of
``GET users?state=active`` (JupyterHub pages at ``api_page_max_limit``, 200 by default), and releases each
pending or allocated slice whose ``(user, server name)`` is neither running nor starting there. The hub
knows what runs: it polls each server's process (local) or pod (Kubernetes) itself.

Safety: an allocation younger than the listing is never a candidate (its spawn may not be listed yet); a
candidate's user is asked again on its own (``GET users/{name}``) before its slice is released, so a user
list that shifted while it was paged frees nothing wrongly; a hub that does not answer frees nothing.
Each release is logged and recorded with its reason (``GET allocations/released``, the admin page).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from urllib.parse import quote

from sqlalchemy import update
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from job_runner.controller import metrics
from job_runner.db import ALLOC_ALLOCATED, ALLOC_PENDING, ALLOC_RELEASED, Allocation, utcnow

PAGINATION = "application/jupyterhub-pagination+json"
REASON = "its server is not running or starting in the hub (reconciliation)"
log = logging.getLogger("aistack.reconcile")


class HubUnavailable(RuntimeError):
    """The hub did not answer (or not as expected): nothing is released this time."""


class HubServers:
    """What the hub says runs, read with the service's own token (``list:users``, ``read:servers``)."""

    def __init__(self, api_url: str, token: str, page_size: int = 200, timeout_s: float = 30.0):
        self.api_url = api_url.rstrip("/") + "/"
        self.token = token
        self.page_size = page_size
        self.timeout_s = timeout_s

    async def _get(self, path: str):
        try:
            resp = await AsyncHTTPClient().fetch(
                self.api_url + path, request_timeout=self.timeout_s,
                headers={"Authorization": f"token {self.token}", "Accept": PAGINATION})
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise HubUnavailable(f"GET {path}: {e}") from e
        except OSError as e:
            raise HubUnavailable(f"GET {path}: {e}") from e
        try:
            return json.loads(resp.body)
        except ValueError as e:
            raise HubUnavailable(f"GET {path}: not JSON") from e

    async def active(self) -> set[tuple[str, str]]:
        """``{(user, server name)}`` of every running or starting server, over all pages."""
        live: set[tuple[str, str]] = set()
        offset, pages = 0, 0
        while True:
            data = await self._get(f"users?state=active&offset={offset}&limit={self.page_size}")
            if isinstance(data, list):  # a hub that does not page: the whole list
                items, nxt = data, None
            elif isinstance(data, dict) and isinstance(data.get("items"), list):
                items, nxt = data["items"], (data.get("_pagination") or {}).get("next")
            else:
                raise HubUnavailable(f"GET users: unexpected answer {str(data)[:200]}")
            for user in items:
                live.update((user["name"], name) for name in (user.get("servers") or {}))
            pages += 1
            if not nxt or not items:
                return live
            offset = int(nxt["offset"])
            if pages > 100000:  # a hub answering the same page for ever
                raise HubUnavailable("GET users: pagination does not end")

    async def user_servers(self, name: str) -> set[str] | None:
        """The running or starting servers of one user (None: no such user)."""
        data = await self._get(f"users/{quote(name, safe='')}")
        if data is None:
            return None
        return set(data.get("servers") or {})


class Reconciler:
    """Releases the service's server slices that no hub server holds (see the module's docstring)."""

    def __init__(self, ctx, hub: HubServers | None):
        self.ctx = ctx
        self.hub = hub
        self.last: dict | None = None  # {at, released, error}: what the last run did (GET allocations/released)

    def _candidates_db(self, before: _dt.datetime) -> list[tuple[int, str, str]]:
        with self.ctx.db.read() as s:
            return [(a.id, a.user, a.server_name or "") for a in
                    s.query(Allocation.id, Allocation.user, Allocation.server_name)
                    .filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)), Allocation.created_at < before)]

    def _release_db(self, ids: list[int], reason: str) -> list[int]:
        done = []
        with self.ctx.db.session() as s:
            for alloc_id in ids:
                res = s.execute(update(Allocation).where(
                    Allocation.id == alloc_id, Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)))
                    .values(state=ALLOC_RELEASED, released_at=utcnow(), release_reason=reason))
                if res.rowcount == 1:
                    done.append(alloc_id)
        return done

    async def run_once(self) -> list[dict]:
        """One reconciliation; returns the released ``[{id, user, server_name}]``. Raises HubUnavailable
        (releasing nothing) when the hub cannot be asked."""
        if self.hub is None:
            raise HubUnavailable("no hub API (JUPYTERHUB_API_URL is not set)")
        io = self.ctx.offload.io
        started = utcnow()
        try:
            live = await self.hub.active()
            candidates = [c for c in await io(self._candidates_db, started) if (c[1], c[2]) not in live]
            confirmed, by_user = [], {}
            for alloc_id, user, server in candidates:
                if user not in by_user:
                    by_user[user] = await self.hub.user_servers(user)
                servers = by_user[user]
                if servers is None or server not in servers:
                    confirmed.append((alloc_id, user, server))
        except HubUnavailable as e:
            self.last = {"at": started.isoformat() + "Z", "released": [], "error": str(e)}
            raise
        released = set(await io(self._release_db, [c[0] for c in confirmed], REASON)) if confirmed else set()
        out = []
        for alloc_id, user, server in confirmed:
            if alloc_id in released:
                log.warning("released allocation %s of %s:%s: %s", alloc_id, user, server or "(default)", REASON)
                out.append({"id": alloc_id, "user": user, "server_name": server})
        if out:
            metrics.RECONCILED.inc(len(out))
            self.ctx.controller.wake()
        self.last = {"at": started.isoformat() + "Z", "released": out, "error": None}
        return out
