"""The tenant's idle time-out for a running server: warn (shown on every hub page), then stop.

Two kinds of idleness are watched, and the first to say "stop" stops the server:

- *browser* idleness (below): no activity recorded by the hub for the tenant's ``idle_timeout_s``;
- *GPU* idleness (issue 15 B, ``gpu_check``): a server holding a GPU slice whose GPU activity stayed under
  the tenant's threshold for its idle time, as the service's monitor judged it from its GPU samples
  (``GET monitoring/idle/{allocation}``: ok / warn / stop, with the user's "keep for N hours" applied).
  The warning is the hub pages' banner and the JupyterLab notification (labextension ``idle.ts``).

The time-out is the tenant's ``idle_timeout_s`` as the service's database holds it *now*: each check reads
it (``GET tenants/{name}``), so an admin's edit on the admin page takes effect on the next check, without a
hub restart. Activity is the hub's own record (``orm_spawner.last_activity``, kept by the proxy's activity
reports and the server's own), so this needs no separate culler service.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone


def last_activity_ts(spawner) -> float | None:
    """The server's last activity as a UNIX time (None: the hub has none recorded)."""
    orm = getattr(spawner, "orm_spawner", None)
    last = getattr(orm, "last_activity", None) if orm is not None else None
    if last is None:
        return None
    if last.tzinfo is None:
        last = last.replace(tzinfo=timezone.utc)
    return last.timestamp()


def warning_text(server_name: str, tenant: str, idle_s: float, stop_at: float) -> str:
    at = datetime.fromtimestamp(stop_at, timezone.utc).strftime("%H:%M:%S UTC")
    name = f"'{server_name}'" if server_name else "default"
    since = f"{int(idle_s // 60)} min" if idle_s >= 60 else f"{int(idle_s)} s"
    return (f"Your {name} server has been idle for {since} and will be stopped at {at} "
            f"(tenant {tenant} idle time-out). Use it to keep it running; you can start it again any time.")


class IdleCuller:
    """Watches one spawner's server: every ``interval`` s one ``check``; sets ``spawner.idle_warning``."""

    def __init__(self, spawner, client, *, interval: float, warning_s: float):
        self.spawner = spawner
        self.client = client
        self.interval = interval
        self.warning_s = warning_s
        self._task: asyncio.Task | None = None

    async def timeout_s(self) -> int:
        """The tenant's idle time-out now (0 = none)."""
        tenant = await self.client.tenant(self.spawner.tenant)
        return int((tenant or {}).get("idle_timeout_s") or 0)

    def start(self):
        self.stop()
        if self.interval > 0:
            # Always watch: a tenant without a time-out today may get one from the admin page tomorrow.
            self._task = asyncio.ensure_future(self._loop())

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    def stop(self):
        task, self._task = self._task, None
        if task and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def check(self, now: float | None = None) -> str:
        """One idle check (browser, then GPU): returns "ok", "warned" or "stopped"."""
        result = await self.browser_check(now)
        if result == "stopped":
            return result
        gpu = await self.gpu_check(keep_warning=result == "warned")
        return gpu if gpu != "ok" else result

    # --- GPU-aware culling (issue 15 B) ---
    async def gpu_check(self, keep_warning: bool = False) -> str:
        """The service's GPU idle decision for this server's slice: "ok", "warned" or "stopped"."""
        sp = self.spawner
        alloc_id = (sp.allocation or {}).get("id")
        if not alloc_id or sp.pending:
            return "ok"
        code, data = await self.client.call("GET", f"monitoring/idle/{alloc_id}")
        if code != 200 or not isinstance(data, dict):
            if code != 404:
                sp.log.warning("GPU idle check of %s answered %s: %s", sp._log_name, code, data)
            return "ok"
        action = data.get("action")
        if action == "stop":
            sp.log.warning("%s: GPU idle, stopping (%s)", sp._log_name, data.get("reason"))
            sp.idle_warning = ""
            await self._stop_server()
            return "stopped"
        if action == "warn":
            first = not sp.idle_warning
            sp.idle_warning = data.get("message") or "Your server's GPU is idle: it will be stopped soon."
            if first:
                sp.log.info("%s: %s", sp._log_name, sp.idle_warning)
            return "warned"
        if not keep_warning:
            sp.idle_warning = ""
        return "ok"
    # --- end GPU-aware culling ---

    async def browser_check(self, now: float | None = None) -> str:
        """The hub's browser-activity idle check: "ok", "warned" or "stopped"."""
        sp = self.spawner
        last = last_activity_ts(sp)
        if last is None:
            return "ok"
        timeout = await self.timeout_s()
        if not timeout:
            sp.idle_warning = ""
            return "ok"
        now = time.time() if now is None else now
        idle = now - last
        if idle >= timeout:
            if sp.pending:
                return "ok"  # starting or stopping already
            sp.log.warning("%s idle for %ds (tenant %s time-out %ds): stopping", sp._log_name, idle, sp.tenant,
                           timeout)
            sp.idle_warning = ""
            await self._stop_server()
            return "stopped"
        if idle >= timeout - self.warning_s:
            first = not sp.idle_warning
            sp.idle_warning = warning_text(sp.name, sp.tenant, idle, last + timeout)
            if first:
                sp.log.info("%s: %s", sp._log_name, sp.idle_warning)
            return "warned"
        sp.idle_warning = ""
        return "ok"

    async def _stop_server(self):
        # The way the hub's stop handler does it: route first, then user.stop (which calls the spawner's
        # stop(), releasing the slice, and records the server as stopped).
        sp = self.spawner
        sp._stop_pending = True
        proxy = (getattr(sp.user, "settings", None) or {}).get("proxy")
        try:
            if proxy is not None:
                await proxy.delete_user(sp.user, sp.name)
        finally:
            await sp.user.stop(sp.name)

    async def _loop(self):
        while True:
            await asyncio.sleep(self.interval)
            if not self.spawner.allocation:
                return  # the server stopped and gave its slice back
            try:
                if await self.check() == "stopped":
                    return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep watching; a failed check (service down) must not end the watch
                self.spawner.log.warning("idle check of %s failed: %s", self.spawner._log_name, e)
