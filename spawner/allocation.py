"""The allocation protocol of a server's GPU slice with the ``aistack`` service (the one scheduler).

- ``POST allocations`` before the server starts; the service may hold its answer a few seconds while it
  places the slice, then answers ``allocated`` or ``pending`` (waiting in line: poll ``GET allocations/{id}``
  until allocated, each change of queue position an event for the spawn page);
- over quota is refused at once with what is in use (an interactive server does not wait for colleagues to
  stop theirs; jobs do);
- ``DELETE allocations/{id}`` when the server stops or fails to start (idempotent: 404 = already gone).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import time

from tornado import web

from job_runner.scheduling import SliceRequest
from job_runner.scheduling.estimates import describe_wait

from .client import ServiceClient, message
from .form import fmt_milli

# The states of an allocation that hold a slice.
HELD = ("allocated", "running", "admitted")
RESOURCES = (("gpu_milli", "GPU", 1000), ("cpu_milli", "CPU", 1000), ("memory_mib", "GiB", 1024))


class AllocationRefused(web.HTTPError):
    """The service refused the slice (over quota, not allowed, nothing free and not waiting)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        # JupyterHub shows these to the user on the spawn page and in API errors.
        self.jupyterhub_message = message
        self.message = message


def slice_request(req: dict | SliceRequest | None) -> SliceRequest:
    """The core's ``SliceRequest`` of a profile's ``request`` as the service sends it (unset fields null)."""
    if isinstance(req, SliceRequest):
        return req
    known = set(SliceRequest.__dataclass_fields__)
    return SliceRequest.from_dict({k: v for k, v in (req or {"kind": "cpu"}).items() if v is not None and k in known})


def slice_label(asg: dict) -> str:
    """Short label of an assignment: "node/gpu0:250m", "node/gpu1:mig-3g.40gb@4", "node/cpu"."""
    if not asg:
        return ""
    node = asg.get("node", "")
    if asg.get("mig"):
        g, prof, start = asg["mig"]
        return f"{node}/gpu{g}:mig-{prof}@{start}"
    idx = asg.get("gpu_indices") or []
    if not idx:
        return f"{node}/cpu"
    milli = int(asg.get("gpu_milli") or 0)
    share = f":{milli}m" if 0 < milli < 1000 else ""
    return f"{node}/" + "+".join(f"gpu{i}" for i in idx) + share


def over_quota_message(tenant: str, user: str, profile: dict, usage: dict | None) -> str:
    """What the user reads when the tenant's quota left cannot hold ``profile`` now: need, left, in use."""
    charge = slice_request(profile.get("request")).charge().to_dict()
    left = profile.get("quota_left") or {}
    in_use = ""
    if usage:
        u = (usage.get("tenants") or {}).get(tenant) or {}
        mine = ((usage.get("users") or {}).get(user) or {}).get(tenant) or {}
        in_use = (f"; in use now: {fmt_milli(u.get('gpu_milli', 0))} GPU ({u.get('gpu_milli', 0)} milli-GPU), "
                  f"{fmt_milli(u.get('cpu_milli', 0))} CPU, {u.get('memory_mib', 0) / 1024:g} GiB by "
                  f"{u.get('servers', 0)} server(s) and {u.get('jobs_running', 0)} running job(s), "
                  f"{mine.get('servers', 0)} of the servers yours")
    need = []
    for key, unit, scale in RESOURCES:
        if left.get(key) is not None and charge[key] > left[key]:
            need.append(f"{charge[key] / scale:g} {unit} but {left[key] / scale:g} {unit} of the quota is left")
    return (f"Over quota: tenant {tenant!r} cannot start profile {profile.get('slug')!r} now: it needs "
            f"{'; '.join(need) or 'more than the quota left'}{in_use}. Stop a server or wait for jobs to finish,"
            f" or pick a smaller profile.")


def _seconds_from_now(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    try:
        at = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:  # the service's timestamps are UTC
        at = at.replace(tzinfo=_dt.timezone.utc)
    return at.timestamp() - now


def start_words(allocation: dict, now: float | None = None) -> str:
    """When a waiting server should start, rounded ("starts in about 10 min", "starts in 10–20 min"), or
    "start time unknown": never a timestamp to the microsecond."""
    now = time.time() if now is None else now
    mid = _seconds_from_now(allocation.get("estimated_start"), now)
    if mid is None:
        return "start time unknown"
    low = _seconds_from_now(allocation.get("estimated_start_earliest"), now)
    high = _seconds_from_now(allocation.get("estimated_start_latest"), now)
    low = mid if low is None else low
    high = mid if high is None else high
    if high <= 1:
        return "starts now"
    words = describe_wait(max(0.0, low), high)
    return f"starts {'' if words.startswith('within') else 'in '}{words}"


class PendingEvents:
    """Progress events while waiting in line: one per change of queue position or estimated start."""

    def __init__(self):
        self.events: list[dict] = []

    def note(self, allocation: dict, tenant: str, profile: str):
        msg = f"Waiting in line for a GPU ({profile}, tenant {tenant})"
        if allocation.get("position") is not None:
            msg += f": position {allocation['position']}"
        msg += f", {start_words(allocation)}"
        if not self.events or self.events[-1]["message"] != msg:
            self.events.append({"progress": 10, "message": msg})


class Allocator:
    """One server's allocate / wait in line / release against the service.

    ``on_update(allocation)`` is called with every answer (pending ones included), and with None once the
    allocation is gone, so that the spawner holds the id at all times: a stop while waiting in line
    releases the place in line."""

    def __init__(self, client: ServiceClient, *, wait_for_gpu: bool, queue_timeout: float, poll_interval: float,
                 hold_s: float, log):
        self.client = client
        self.wait_for_gpu = wait_for_gpu
        self.queue_timeout = queue_timeout
        self.poll_interval = poll_interval
        self.hold_s = hold_s
        self.log = log

    async def pick_profile(self, user: str, tenant: str, profile: str) -> str:
        """The profile to allocate (the first usable one when none was chosen); refused at once when it is
        not offered to the tenant or the tenant's quota left cannot hold it now.

        The scheduler's admission only asks whether a request could *ever* fit the quota (jobs wait for
        quota); an interactive server should not wait for colleagues to stop theirs."""
        profiles = await self.client.profiles(tenant, user)
        if not profile:
            usable = [p for p in profiles if p.get("fits_quota", True)]
            if not usable:
                raise AllocationRefused(403, f"tenant {tenant!r} has no profile {user} may use now.")
            return usable[0]["slug"]
        by_slug = {p.get("slug"): p for p in profiles}
        p = by_slug.get(profile)
        if p is None:
            if by_slug:
                raise AllocationRefused(403, f"profile {profile!r} is not offered to tenant {tenant!r}; "
                                             f"offered: {', '.join(sorted(by_slug))}")
            return profile  # the service decides (unknown tenant, ...)
        if not p.get("fits_quota", True):
            raise AllocationRefused(403, over_quota_message(tenant, user, p, await self.client.usage()))
        return profile

    async def allocate(self, user: str, tenant: str, profile: str, server_name: str, on_update) -> dict:
        """Ask for a slice; wait in line while the service says pending. Returns the held allocation."""
        # wait: seconds the service may hold its answer while it places the slice; then we poll, so the
        # spawn page shows the queue position early. False = fail (409) when nothing is free.
        body = {"user": user, "tenant": tenant, "profile": profile, "server_name": server_name,
                "wait": self.hold_s if self.wait_for_gpu else False}
        # The service may hold the answer a while (it waits for its next scheduling pass, up to ~30 s).
        request = asyncio.ensure_future(self.client.create_allocation(body, timeout=self.client.timeout + 45))
        try:
            code, data = await asyncio.shield(request)
        except asyncio.CancelledError:
            # Cancelled (a DELETE of the pending spawn) while the service was answering: the row exists, or
            # will in a moment, and only its answer says which; take it and give it back.
            await asyncio.shield(self._give_back_answer(request))
            raise
        if code not in (200, 201):
            raise AllocationRefused(code if 400 <= code < 500 else 502,
                                    f"Cannot start a server with profile {profile!r} for tenant {tenant!r}: "
                                    f"{message(data)}")
        allocation = data
        on_update(allocation)
        deadline = time.monotonic() + self.queue_timeout
        while allocation.get("state") == "pending":
            if time.monotonic() > deadline:
                if await self.release(allocation):
                    on_update(None)
                raise AllocationRefused(409, f"no GPU for profile {profile!r} became free within "
                                             f"{self.queue_timeout}s; try again later or pick another profile")
            await asyncio.sleep(self.poll_interval)
            code, data = await self.client.allocation(allocation["id"])
            if code != 200:
                on_update(None)
                raise AllocationRefused(409 if code == 404 else 502, f"the waiting allocation ended: {message(data)}")
            allocation = data
            on_update(allocation)
        if allocation.get("state") not in HELD:
            if await self.release(allocation):
                on_update(None)
            raise AllocationRefused(409, f"allocation ended as {allocation.get('state')!r}")
        return allocation

    async def _give_back_answer(self, request: asyncio.Future) -> None:
        try:
            code, data = await request
        except Exception:  # noqa: BLE001 - no answer: the service's reconciliation frees the row
            return
        if code in (200, 201) and isinstance(data, dict):
            await self.release(data)

    async def release(self, allocation: dict | None) -> bool:
        """Give the slice back; True when it is gone (a 404 means it already was)."""
        if not allocation or not allocation.get("id"):
            return True
        try:
            code, data = await self.client.release(allocation["id"])
        except web.HTTPError as e:
            # The caller keeps the id in state so that a later stop retries; the service reconciles too.
            self.log.error("releasing allocation %s failed: %s", allocation["id"], e.log_message)
            return False
        if code not in (200, 202, 204, 404):
            self.log.error("releasing allocation %s answered %s: %s", allocation["id"], code, message(data))
            return False
        return True
