"""GPUSliceSpawnerMixin: what every AIStack spawner backend shares, composed of one-job parts:

- ``spawner.client``: the ``aistack`` service's REST client (the hub's token);
- ``spawner.form``: the profile form per tenant of the user, and the check of the options it posts;
- ``spawner.allocation``: allocate before the server starts (over quota refused with what is in use, no
  free GPU may wait in line), release when it stops or fails to start;
- ``spawner.idle``: the tenant's idle time-out, read live: warn, then stop.

Binding the slice to the server is the backend's: ``LocalGPUSpawner`` (``job_runner.binding.local``),
``KubeGPUSpawner`` (``job_runner.binding.kube``). Use the mixin first in the bases:
``class MySpawner(GPUSliceSpawnerMixin, SomeSpawner)``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

from traitlets import Bool, Dict, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from . import form
from .allocation import AllocationRefused, Allocator, PendingEvents, slice_label
from .client import ServiceClient
from .idle import IdleCuller


class GPUSliceSpawnerMixin(LoggingConfigurable):
    """Profile form per tenant, slice allocation through the ``aistack`` service, labels, release, idle stop.

    The backend binds the allocated slice: ``LocalGPUSpawner`` with ``job_runner.binding.local``,
    ``KubeGPUSpawner`` with ``job_runner.binding.kube`` (the device plugin); both apply ``aistack_labels``.
    """

    aistack_api_url = Unicode(
        "",
        help="""Base URL of the aistack service REST API as the hub reaches it,
        e.g. ``http://127.0.0.1:8790/services/aistack/api/`` (``aistack_hub.hubconfig.configure`` sets it).""",
    ).tag(config=True)

    aistack_token = Unicode(
        "",
        help="""The hub's token for the aistack service: the service's own ``api_token``
        (``aistack_hub.hubconfig.configure`` sets it). Never shown to users.""",
    ).tag(config=True)

    wait_for_gpu = Bool(
        True,
        help="""When the quota allows the slice but no GPU is free, wait in line (the spawn page shows the
        position) instead of failing. Over-quota requests always fail at once.""",
    ).tag(config=True)

    queue_timeout = Integer(
        3600,
        help="Longest time (seconds) a spawn waits in line for a GPU before giving up.",
    ).tag(config=True)

    allocation_poll_interval = Float(
        1.0, help="Seconds between checks of a pending allocation while waiting in line."
    ).tag(config=True)

    allocation_hold_s = Float(
        5.0, help="Seconds the service may hold the POST allocations answer before saying 'pending'."
    ).tag(config=True)

    service_timeout = Float(
        30.0, help="Timeout (seconds) of one request to the aistack service."
    ).tag(config=True)

    default_tenant = Unicode(
        "", help="Tenant used when a user is in several and did not pick one (default: the first, by name)."
    ).tag(config=True)

    idle_warning_s = Integer(
        300,
        help="""How long before the idle stop the user is warned (shown on every hub page).
        The server is stopped once it has been idle for the tenant's idle time-out (the tenant's
        ``idle_timeout_s`` in the service's database, read on every check).""",
    ).tag(config=True)

    idle_check_interval = Integer(
        30, help="Seconds between idle checks of a running server (0 disables idle culling)."
    ).tag(config=True)

    # --- state (persisted through get_state/load_state) ---
    allocation = Dict(allow_none=True, default_value=None, help="The service's answer for this server's slice.")
    tenant = Unicode("")
    profile_slug = Unicode("")
    idle_warning = Unicode("", help="Current idle warning text ('' = none); shown by the hub templates.")

    # ------------------------------------------------------------------ parts
    @property
    def service(self) -> ServiceClient:
        return ServiceClient(self.aistack_api_url, self.aistack_token, self.service_timeout)

    @property
    def allocator(self) -> Allocator:
        return Allocator(self.service, wait_for_gpu=self.wait_for_gpu, queue_timeout=self.queue_timeout,
                         poll_interval=self.allocation_poll_interval, hold_s=self.allocation_hold_s, log=self.log)

    @property
    def idle_culler(self) -> IdleCuller:
        # One per spawner (it holds the watch task); plain attributes of a HasTraits live in __dict__.
        culler = self.__dict__.get("_aistack_culler")
        if culler is None:
            culler = self.__dict__["_aistack_culler"] = IdleCuller(
                self, self.service, interval=self.idle_check_interval, warning_s=self.idle_warning_s)
        return culler

    @property
    def pending_events(self) -> PendingEvents:
        return self.__dict__.setdefault("_aistack_events", PendingEvents())

    # ------------------------------------------------------------------ tenants and the form
    def user_tenants(self) -> list[str]:
        return form.user_tenants(self.user)

    async def fetch_profiles(self, tenant: str) -> list[dict]:
        """The profiles the user may use in ``tenant`` (backends may leave out what they cannot run)."""
        return await self.service.profiles(tenant, self.user.name)

    async def profiles_by_tenant(self) -> dict[str, list[dict]]:
        return await form.profiles_by_tenant(self.fetch_profiles, self.user_tenants())

    @default("options_form")
    def _default_options_form(self):
        return form.options_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return form.check_user_options

    def options_from_form(self, formdata):
        return form.options_from_form(formdata)

    # ------------------------------------------------------------------ labels and env
    @property
    def aistack_labels(self) -> dict:
        """Labels for the server (pod labels on Kubernetes)."""
        a = self.allocation or {}
        asg = a.get("assignment") or {}
        return {
            "aistack.io/tenant": self.tenant,
            "aistack.io/profile": self.profile_slug,
            "aistack.io/allocation": str(a.get("id", "")),
            "aistack.io/node": str(asg.get("node", "")),
            "aistack.io/slice": slice_label(asg),
        }

    def aistack_env(self) -> dict:
        """What the server is told about its slice (no binding: that is the backend's)."""
        a = self.allocation or {}
        return {
            "AISTACK_TENANT": self.tenant,
            "AISTACK_PROFILE": self.profile_slug,
            "AISTACK_ALLOCATION_ID": str(a.get("id", "")),
            "AISTACK_SLICE": json.dumps(a.get("assignment") or {}, sort_keys=True),
        }

    # ------------------------------------------------------------------ allocation
    def _choose(self) -> tuple[str, str]:
        opts = self.user_options or {}
        tenants = self.user_tenants()
        tenant = opts.get("tenant") or self.default_tenant or (tenants[0] if tenants else "")
        if not tenant:
            raise AllocationRefused(403, f"{self.user.name} is not in any tenant: ask an admin to add you to one.")
        if tenant not in tenants:
            raise AllocationRefused(403, f"{self.user.name} is not a member of tenant {tenant!r}.")
        return tenant, opts.get("profile") or ""

    def _on_allocation(self, allocation: dict | None):
        self.allocation = allocation
        if allocation and allocation.get("state") == "pending":
            self.pending_events.note(allocation, self.tenant, self.profile_slug)

    async def allocate(self) -> dict:
        """Ask the service for a slice; wait in line if it says pending. Returns the allocation."""
        tenant, profile = self._choose()
        allocator = self.allocator
        profile = await allocator.pick_profile(self.user.name, tenant, profile)
        self.tenant, self.profile_slug = tenant, profile
        await allocator.allocate(self.user.name, tenant, profile, self.name or "", self._on_allocation)
        self.apply_profile_limits(self.allocation.get("profile") or {})
        return self.allocation

    def apply_profile_limits(self, profile: dict):
        """Publish the slice's CPU/memory as the standard limits (MEM_LIMIT/CPU_LIMIT env, kube limits)."""
        req = profile.get("request") or {}
        if req.get("memory_mib"):
            self.mem_limit = int(req["memory_mib"]) * 1024 * 1024
        if req.get("cpu_milli"):
            self.cpu_limit = int(req["cpu_milli"]) / 1000

    async def release(self):
        """Give the slice back (idempotent); on failure the id stays in state so that a later stop retries."""
        if await self.allocator.release(self.allocation):
            self.allocation = None
            self.idle_warning = ""

    def allocation_is_final(self) -> bool:
        a = self.allocation
        return bool(a) and a.get("state") != "pending"

    async def progress(self):
        yield {"progress": 5, "message": "Asking the aistack scheduler for a GPU slice..."}
        sent = 0
        while self._spawn_pending and not self.allocation_is_final():
            events = self.pending_events.events
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.5)
        async for event in super().progress():
            yield event

    # ------------------------------------------------------------------ lifecycle
    def run_pre_spawn_hook(self):
        # Waiting in line must not trip the hub's start timeout, which the hub reads right after calling
        # start() (before start's body runs): extend it here.
        if self.wait_for_gpu:
            self.start_timeout = max(self.start_timeout, self.queue_timeout + 120)
        return super().run_pre_spawn_hook()

    @contextlib.contextmanager
    def start_phase(self, name: str):
        """Time one step of the start (the slice, the tenant's lookups, the backend): ``start`` logs them all
        in one line, where a slow spawn shows which step took the time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            phases = self.__dict__.setdefault("_aistack_phases", {})
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    async def start(self):
        self.__dict__["_aistack_events"] = PendingEvents()
        self.__dict__["_aistack_phases"] = {}
        if self.allocation:
            await self.release()  # a leftover from a failed release: give it back, then ask afresh
        t0 = time.perf_counter()
        try:
            with self.start_phase("slice"):
                await self.allocate()
            self.log.info("%s: slice allocated in %.3f s", self._log_name, time.perf_counter() - t0)
            self.log.info("%s: tenant %s profile %s slice %s", self._log_name, self.tenant, self.profile_slug,
                          self.aistack_labels["aistack.io/slice"])
            with self.start_phase("backend"):
                result = await super().start()
            phases = self.__dict__["_aistack_phases"]
            # the backend's time includes the steps it timed itself (tenant lookups): shown apart
            inner = sum(v for k, v in phases.items() if k not in ("slice", "backend"))
            parts = {**phases, "backend": phases["backend"] - inner}
            self.log.info("%s: start phases %s (total %.3f s)", self._log_name,
                          " ".join(f"{k}={v:.3f}" for k, v in parts.items()), time.perf_counter() - t0)
        except BaseException:
            # Refused, cancelled while waiting in line (DELETE of a pending spawn cancels this task), or the
            # backend failed: JupyterHub calls stop() only for a server that polls as running, which this one
            # never did, so this is where its slice (or its place in line) is given back.
            await self.release_shielded()
            raise
        self.idle_culler.start()
        return result

    async def release_shielded(self):
        """``release`` that finishes even when the task awaiting it is cancelled (again)."""
        try:
            await asyncio.shield(self.release())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the original error is what the user must see
            self.log.error("%s: releasing the slice failed: %s (the service's reconciliation frees it)",
                           self._log_name, e)

    async def stop(self, now=False):
        self.idle_culler.stop()
        try:
            await super().stop(now=now)
        finally:
            await self.release()

    async def poll(self):
        status = await super().poll()
        starting_or_stopping = self._spawn_pending or self._stop_pending
        if status is not None:
            if self.allocation and not self._spawn_pending:
                # The server ended by itself (File > Shut Down, a crash, the OOM killer) or never started:
                # JupyterHub only calls stop() for a server still running, so the slice is released here,
                # the first time the hub's periodic poll (or its stop handler, or its start-up check) sees
                # it gone.
                self.log.info("%s: the server is gone (status %s): releasing its slice", self._log_name, status)
                self.idle_culler.stop()
                await self.release()
            return status
        # A server that outlived a hub restart (cleanup_servers off) is watched again: the hub polls every
        # server it loads from its database, and the watch lived only in the old hub process.
        if self.allocation and not starting_or_stopping and not self.idle_culler.watching:
            self.idle_culler.start()
        return status

    def get_env(self):
        env = super().get_env()
        env.update(self.aistack_env())
        return env

    def get_state(self):
        state = super().get_state()
        if self.allocation:
            state["aistack"] = {"allocation": self.allocation, "tenant": self.tenant, "profile": self.profile_slug}
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("aistack") or {}
        if saved:
            self.allocation = saved.get("allocation")
            self.tenant = saved.get("tenant", "")
            self.profile_slug = saved.get("profile", "")

    def clear_state(self):
        super().clear_state()
        # the allocation is kept until release() succeeds (stop calls it after clear_state)

    async def check_idle(self, now: float | None = None) -> str:
        """One idle check now ("ok", "warned" or "stopped"); the watch calls it every idle_check_interval."""
        return await self.idle_culler.check(now)
