"""GPUSliceSpawnerMixin: what every AIStack spawner backend shares.

- the profile form: per tenant of the user (tenants are JupyterHub groups), only the profiles that tenant
  may use, each with free capacity and quota left (from the ``aistack`` service's ``GET profiles``);
- allocation: ``POST allocations`` to the service (the one scheduler) before the server starts; over quota
  is refused with the service's message (what is in use), no free GPU may *wait in line*;
- labels (tenant, profile, slice) and the slice environment for the backend to apply;
- release of the slice when the server stops (or fails to start);
- the tenant's idle time-out: warn, then stop.

Use it first in the bases: ``class MySpawner(GPUSliceSpawnerMixin, SomeSpawner)``.
"""
from __future__ import annotations

import asyncio
import html
import json
import time
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Dict, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable


class AllocationRefused(web.HTTPError):
    """The service refused the slice (over quota, not allowed, nothing free and not waiting)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        # JupyterHub shows these to the user on the spawn page and in API errors.
        self.jupyterhub_message = message
        self.message = message


def _fmt_milli(m) -> str:
    return f"{m / 1000:g}" if isinstance(m, (int, float)) else str(m)


def describe_request(req: dict | None) -> str:
    """Human summary of a slice request dict: "1/4 GPU (A100-80GB) · 20 GiB GPU mem · 2 CPU · 8 GiB"."""
    if not req:
        return ""
    parts = []
    kind = req.get("kind", "cpu")
    models = "/".join(req.get("gpu_models") or ())
    on = f" ({models})" if models else ""
    if kind == "whole":
        parts.append(f"{req.get('gpus', 1)}× GPU{on}")
    elif kind == "share":
        parts.append(f"{_fmt_milli(req.get('gpu_milli', 0))} GPU{on}")
        if req.get("gpu_mem_mib"):
            parts.append(f"{req['gpu_mem_mib'] / 1024:g} GiB GPU memory")
    elif kind == "mig":
        parts.append(f"MIG {req.get('mig_profile')}{on}")
    else:
        parts.append("no GPU")
    if req.get("cpu_milli"):
        parts.append(f"{_fmt_milli(req['cpu_milli'])} CPU")
    if req.get("memory_mib"):
        parts.append(f"{req['memory_mib'] / 1024:g} GiB RAM")
    return " · ".join(parts)


def _quota_text(quota_left) -> str:
    if quota_left is None:
        return "unlimited"
    if isinstance(quota_left, dict):
        bits = []
        for key, unit, scale in (("gpu_milli", "GPU", 1000), ("cpu_milli", "CPU", 1000), ("memory_mib", "GiB", 1024)):
            v = quota_left.get(key)
            if v is not None:
                bits.append(f"{v / scale:g} {unit}")
        return ", ".join(bits) or "unlimited"
    return str(quota_left)


def render_profile_form(tenants: list[str], profiles_by_tenant: dict[str, list[dict]], chosen_tenant: str | None = None,
                        wait_for_gpu: bool = True) -> str:
    """The spawn form: one fieldset per tenant with its profiles (radio ``profile`` = ``tenant/slug``).

    Pure function of its inputs (the benchmark renders it with 100 tenants)."""
    out = ['<div class="aistack-profiles">']
    if len(tenants) > 1:
        out.append('<p>You are in several tenants: the server is charged to the tenant whose profile you pick.</p>')
    first = True
    for tenant in tenants:
        profiles = profiles_by_tenant.get(tenant) or []
        t = html.escape(tenant)
        out.append(f'<fieldset class="mb-3" data-tenant="{t}"><legend>Tenant <strong>{t}</strong></legend>')
        if not profiles:
            out.append("<p class='text-muted'>No profile is available to this tenant.</p>")
        for p in profiles:
            slug = html.escape(str(p.get("slug", "")))
            name = html.escape(str(p.get("display_name") or p.get("slug")))
            spec = describe_request(p.get("request"))
            if p.get("image"):
                spec += f" · image {p['image']}"
            desc = html.escape(" — ".join(x for x in (spec, str(p.get("description") or "")) if x))
            free = p.get("free")
            fits = p.get("fits_quota", True)
            notes = []
            if free is not None:
                notes.append(f"{free} free now" if free else ("none free: you will wait in line" if wait_for_gpu
                                                                else "none free now"))
            notes.append(f"quota left: {html.escape(_quota_text(p.get('quota_left')))}")
            if not fits:
                notes.append("<strong>over your tenant's quota</strong>")
            disabled = "" if fits and (free or wait_for_gpu or free is None) else " disabled"
            checked = ""
            if first and not disabled and (chosen_tenant in (None, tenant)):
                checked, first = " checked", False
            value = f"{t}/{slug}"
            out.append(
                f'<div class="form-check"><input class="form-check-input" type="radio" name="profile" '
                f'id="p-{t}-{slug}" value="{value}"{checked}{disabled}>'
                f'<label class="form-check-label" for="p-{t}-{slug}"><strong>{name}</strong> '
                f'<small class="text-muted">{desc}</small><br><small>{" · ".join(notes)}</small></label></div>'
            )
        out.append("</fieldset>")
    out.append("</div>")
    return "\n".join(out)


class GPUSliceSpawnerMixin(LoggingConfigurable):
    """Profile form per tenant, slice allocation through the ``aistack`` service, labels, release.

    The backend (LocalProcessSpawner, KubeSpawner, ...) applies ``self.slice_env()`` / ``self.aistack_labels``.
    """

    aistack_api_url = Unicode(
        help="""Base URL of the aistack service REST API as the hub reaches it,
        e.g. ``http://127.0.0.1:8790/services/aistack/api/`` (env ``AISTACK_API_URL``).""",
    ).tag(config=True)

    @default("aistack_api_url")
    def _default_api_url(self):
        import os

        return os.environ.get("AISTACK_API_URL", "")

    aistack_token = Unicode(
        help="""The hub's token for the aistack service: the service's own ``api_token``
        (env ``AISTACK_SERVICE_TOKEN``). Never shown to users.""",
    ).tag(config=True)

    @default("aistack_token")
    def _default_token(self):
        import os

        return os.environ.get("AISTACK_SERVICE_TOKEN", "")

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

    tenant_idle_timeouts = Dict(
        value_trait=Integer(),
        help="""Idle time-out in seconds per tenant (0 or absent = none), used when the service's allocation
        answer does not carry ``idle_timeout_s``. Filled from the deployment config by hubconfig.""",
    ).tag(config=True)

    idle_warning_s = Integer(
        300,
        help="""How long before the idle stop the user is warned (shown on every hub page).
        The server is stopped once it has been idle for the tenant's idle time-out.""",
    ).tag(config=True)

    idle_check_interval = Integer(
        30, help="Seconds between idle checks of a running server (0 disables idle culling)."
    ).tag(config=True)

    # --- state (persisted through get_state/load_state) ---
    allocation = Dict(allow_none=True, default_value=None, help="The service's answer for this server's slice.")
    tenant = Unicode("")
    profile_slug = Unicode("")
    idle_warning = Unicode("", help="Current idle warning text ('' = none); shown by the hub templates.")

    # ------------------------------------------------------------------ service calls
    def _api(self, path: str, query: dict | None = None) -> str:
        base = self.aistack_api_url
        if not base:
            raise web.HTTPError(500, "aistack_api_url is not configured (hubconfig.configure sets it)")
        url = base.rstrip("/") + "/" + path.lstrip("/")
        return url + ("?" + urlencode(query) if query else "")

    async def _call(self, method: str, path: str, body=None, query: dict | None = None, timeout: float | None = None):
        """One JSON request to the service with the hub's token; returns (status, parsed body)."""
        req = HTTPRequest(
            self._api(path, query),
            method=method,
            headers={"Authorization": f"token {self.aistack_token}", "Content-Type": "application/json"},
            body=None if body is None and method in ("GET", "DELETE") else json.dumps(body or {}),
            request_timeout=timeout or self.service_timeout,
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

    # ------------------------------------------------------------------ tenants and the form
    def user_tenants(self) -> list[str]:
        """The user's tenants: their JupyterHub groups (the service ignores groups that are not tenants)."""
        return sorted(g.name for g in getattr(self.user, "groups", []) or [])

    async def fetch_profiles(self, tenant: str) -> list[dict]:
        code, data = await self._call("GET", "profiles", query={"tenant": tenant, "user": self.user.name})
        if code in (400, 403, 404):
            return []  # not a tenant, or the user may not use it
        if code != 200:
            raise web.HTTPError(502, f"aistack service: GET profiles answered {code}: {_message(data)}")
        items = data.get("profiles", data.get("items")) if isinstance(data, dict) else data
        return list(items or [])

    async def profiles_by_tenant(self) -> dict[str, list[dict]]:
        tenants = self.user_tenants()
        lists = await asyncio.gather(*(self.fetch_profiles(t) for t in tenants))
        return {t: ps for t, ps in zip(tenants, lists) if ps}

    @default("options_form")
    def _default_options_form(self):
        return _options_form  # a callable: JupyterHub calls it with the spawner, per request

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return _check_user_options  # bad options are a 400 before anything is allocated

    def options_from_form(self, formdata):
        """``profile`` = ``tenant/slug`` from the form; also accepts separate ``tenant`` and ``profile``."""
        raw = (formdata.get("profile") or [""])[0]
        tenant = (formdata.get("tenant") or [""])[0]
        if "/" in raw:
            tenant, raw = raw.split("/", 1)
        return {"tenant": tenant, "profile": raw}

    # ------------------------------------------------------------------ labels and env
    @property
    def aistack_labels(self) -> dict:
        """Labels for the server (pod labels on Kubernetes, env on local processes)."""
        a = self.allocation or {}
        asg = a.get("assignment") or {}
        return {
            "aistack.io/tenant": self.tenant,
            "aistack.io/profile": self.profile_slug,
            "aistack.io/allocation": str(a.get("id", "")),
            "aistack.io/node": str(asg.get("node", "")),
            "aistack.io/slice": slice_label(asg),
        }

    def slice_env(self) -> dict:
        """Environment that pins the slice (the backend may override ``gpu_device_ids``)."""
        a = self.allocation or {}
        env = {k: str(v) for k, v in (a.get("env") or {}).items()}
        asg = a.get("assignment") or {}
        env.update(self.pinning_env(asg))
        env.update({
            "AISTACK_TENANT": self.tenant,
            "AISTACK_PROFILE": self.profile_slug,
            "AISTACK_ALLOCATION_ID": str(a.get("id", "")),
            "AISTACK_SLICE": json.dumps(asg, sort_keys=True),
        })
        return env

    def gpu_device_ids(self, asg: dict) -> list[str]:
        """Device ids for ``CUDA_VISIBLE_DEVICES`` (indices; backends with UUIDs or MIG devices override)."""
        if asg.get("mig"):
            return [str(asg["mig"][0])]
        return [str(i) for i in asg.get("gpu_indices") or ()]

    def pinning_env(self, asg: dict) -> dict:
        env = {}
        ids = self.gpu_device_ids(asg)
        # An empty CUDA_VISIBLE_DEVICES hides every GPU: CPU-only slices really get none.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(ids) if ids else "void"
        milli = int(asg.get("gpu_milli") or 0)
        if ids and not asg.get("mig") and 0 < milli < 1000:
            # A share: MPS caps the SMs and the pinned memory of this client (needs an MPS daemon to act).
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, milli // 10))
            if asg.get("gpu_mem_mib"):
                env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={int(asg['gpu_mem_mib'])}M"
        return env

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

    async def allocate(self) -> dict:
        """Ask the service for a slice; wait in line if it says pending. Returns the allocation."""
        tenant, profile = self._choose()
        if not profile:
            profiles = await self.fetch_profiles(tenant)
            usable = [p for p in profiles if p.get("fits_quota", True)]
            if not usable:
                raise AllocationRefused(403, f"tenant {tenant!r} has no profile {self.user.name} may use now.")
            profile = usable[0]["slug"]
        self.tenant, self.profile_slug = tenant, profile
        await self.check_quota_now(tenant, profile)
        # wait: seconds the service may hold its answer while it places the slice; then we poll, so the
        # spawn page shows the queue position early. False = fail (409) when nothing is free.
        body = {"user": self.user.name, "tenant": tenant, "profile": profile, "server_name": self.name or "",
                "wait": self.allocation_hold_s if self.wait_for_gpu else False}
        # The service may hold the answer a while (it waits for its next scheduling pass, up to ~30 s).
        code, data = await self._call("POST", "allocations", body, timeout=self.service_timeout + 45)
        if code not in (200, 201):
            raise AllocationRefused(code if 400 <= code < 500 else 502,
                                    f"Cannot start a server with profile {profile!r} for tenant {tenant!r}: "
                                    f"{_message(data)}")
        self.allocation = data
        deadline = time.monotonic() + self.queue_timeout
        while self.allocation.get("state") == "pending":
            self._queue_event(self.allocation)
            if time.monotonic() > deadline:
                await self.release()
                raise AllocationRefused(409, f"no GPU for profile {profile!r} became free within "
                                             f"{self.queue_timeout}s; try again later or pick another profile")
            await asyncio.sleep(self.allocation_poll_interval)
            code, data = await self._call("GET", f"allocations/{quote(str(self.allocation['id']))}")
            if code != 200:
                self.allocation = None
                raise AllocationRefused(409 if code == 404 else 502,
                                        f"the waiting allocation ended: {_message(data)}")
            self.allocation = data
        if self.allocation.get("state") not in ("allocated", "running", "admitted"):
            state = self.allocation.get("state")
            await self.release()
            raise AllocationRefused(409, f"allocation ended as {state!r}")
        self.apply_profile_limits(self.allocation.get("profile") or {})
        return self.allocation

    async def check_quota_now(self, tenant: str, profile: str):
        """Refuse at once when the tenant's quota left cannot hold this profile now.

        The scheduler's admission check only asks whether a request could *ever* fit the quota (jobs wait
        for quota); an interactive server should not wait for colleagues to stop theirs, so the spawner
        says what is in use instead."""
        profiles = {p.get("slug"): p for p in await self.fetch_profiles(tenant)}
        p = profiles.get(profile)
        if p is None:
            if profiles:
                raise AllocationRefused(403, f"profile {profile!r} is not offered to tenant {tenant!r}; "
                                             f"offered: {', '.join(sorted(profiles))}")
            return  # the service decides (unknown tenant, ...)
        if p.get("fits_quota", True):
            return
        raise AllocationRefused(403, await self.over_quota_message(tenant, p))

    async def over_quota_message(self, tenant: str, profile: dict) -> str:
        req = profile.get("request") or {}
        left = profile.get("quota_left") or {}
        in_use = ""
        code, usage = await self._call("GET", "usage")
        if code == 200 and isinstance(usage, dict):
            u = (usage.get("tenants") or {}).get(tenant) or {}
            mine = ((usage.get("users") or {}).get(self.user.name) or {}).get(tenant) or {}
            in_use = (f"; in use now: {_fmt_milli(u.get('gpu_milli', 0))} GPU ({u.get('gpu_milli', 0)} milli-GPU), "
                      f"{_fmt_milli(u.get('cpu_milli', 0))} CPU, {u.get('memory_mib', 0) / 1024:g} GiB by "
                      f"{u.get('servers', 0)} server(s) and {u.get('jobs_running', 0)} running job(s), "
                      f"{mine.get('servers', 0)} of the servers yours")
        need = []
        for key, unit, scale in (("gpu_milli", "GPU", 1000), ("cpu_milli", "CPU", 1000), ("memory_mib", "GiB", 1024)):
            charge = _charge(req).get(key, 0)
            if left.get(key) is not None and charge > left[key]:
                need.append(f"{charge / scale:g} {unit} but {left[key] / scale:g} {unit} of the quota is left")
        return (f"Over quota: tenant {tenant!r} cannot start profile {profile.get('slug')!r} now: it needs "
                f"{'; '.join(need) or 'more than the quota left'}{in_use}. Stop a server or wait for jobs to finish,"
                f" or pick a smaller profile.")

    def apply_profile_limits(self, profile: dict):
        """Publish the slice's CPU/memory as the standard limits (MEM_LIMIT/CPU_LIMIT env, kube limits)."""
        req = profile.get("request") or {}
        if req.get("memory_mib"):
            self.mem_limit = int(req["memory_mib"]) * 1024 * 1024
        if req.get("cpu_milli"):
            self.cpu_limit = int(req["cpu_milli"]) / 1000

    async def release(self):
        """Give the slice back (idempotent; a 404 means it is already gone)."""
        a = self.allocation
        if not a or not a.get("id"):
            self.allocation = None
            return
        try:
            code, data = await self._call("DELETE", f"allocations/{quote(str(a['id']))}")
        except web.HTTPError as e:
            # Keep the id in state so a later stop retries; the service reconciles on restart too.
            self.log.error("releasing allocation %s of %s failed: %s", a["id"], self._log_name, e.log_message)
            return
        if code not in (200, 202, 204, 404):
            self.log.error("releasing allocation %s answered %s: %s", a["id"], code, _message(data))
            return
        self.allocation = None
        self.idle_warning = ""

    # ------------------------------------------------------------------ progress while waiting in line
    def _queue_event(self, a: dict):
        pos = a.get("position")
        eta = a.get("estimated_start")
        msg = f"Waiting in line for a GPU ({self.profile_slug}, tenant {self.tenant})"
        if pos is not None:
            msg += f": position {pos}"
        if eta:
            msg += f", estimated start {eta}"
        q = self.__dict__.setdefault("_aistack_events", [])
        if not q or q[-1]["message"] != msg:  # one event per change of position or estimate
            q.append({"progress": 10, "message": msg})

    async def progress(self):
        yield {"progress": 5, "message": "Asking the aistack scheduler for a GPU slice..."}
        sent = 0
        while self._spawn_pending and not self.allocation_is_final():
            events = self.__dict__.get("_aistack_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.5)
        async for event in super().progress():
            yield event

    def allocation_is_final(self) -> bool:
        a = self.allocation
        return bool(a) and a.get("state") != "pending"

    # ------------------------------------------------------------------ lifecycle
    def run_pre_spawn_hook(self):
        # Waiting in line must not trip the hub's start timeout, which the hub reads right after calling
        # start() (before start's body runs): extend it here.
        if self.wait_for_gpu:
            self.start_timeout = max(self.start_timeout, self.queue_timeout + 120)
        return super().run_pre_spawn_hook()

    async def start(self):
        self.__dict__["_aistack_events"] = []
        if self.allocation:
            await self.release()  # a leftover from a failed release: give it back, then ask afresh
        t0 = time.perf_counter()
        await self.allocate()
        self.log.info("%s: slice allocated in %.3f s", self._log_name, time.perf_counter() - t0)
        self.log.info("%s: tenant %s profile %s slice %s", self._log_name, self.tenant, self.profile_slug,
                      self.aistack_labels["aistack.io/slice"])
        try:
            result = await super().start()
        except BaseException:
            await self.release()
            raise
        self._start_idle_watch()
        return result

    async def stop(self, now=False):
        self._stop_idle_watch()
        try:
            await super().stop(now=now)
        finally:
            await self.release()

    def get_env(self):
        env = super().get_env()
        env.update(self.slice_env())
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

    # ------------------------------------------------------------------ idle time-out
    def idle_timeout_s(self) -> int:
        a = self.allocation or {}
        if a.get("idle_timeout_s") is not None:
            return int(a["idle_timeout_s"] or 0)
        return int(self.tenant_idle_timeouts.get(self.tenant, 0) or 0)

    def _start_idle_watch(self):
        self._stop_idle_watch()
        if self.idle_check_interval > 0 and self.idle_timeout_s() > 0:
            self.__dict__["_idle_task"] = asyncio.ensure_future(self._idle_loop())

    def _stop_idle_watch(self):
        task = self.__dict__.pop("_idle_task", None)
        if task and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def last_activity_ts(self) -> float | None:
        orm = getattr(self, "orm_spawner", None)
        last = getattr(orm, "last_activity", None) if orm is not None else None
        if last is None:
            return None
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        return last.timestamp()

    async def check_idle(self, now: float | None = None) -> str:
        """One idle check: returns "ok", "warned" or "stopped"."""
        timeout = self.idle_timeout_s()
        last = self.last_activity_ts()
        if not timeout or last is None:
            return "ok"
        now = time.time() if now is None else now
        idle = now - last
        if idle >= timeout:
            self.log.warning("%s idle for %ds (tenant %s time-out %ds): stopping", self._log_name, idle,
                             self.tenant, timeout)
            self.idle_warning = ""
            # Stop the way the hub's stop handler does: route first, then user.stop (which calls our
            # stop(), releasing the slice, and records the server as stopped).
            if self.pending:
                return "ok"
            self._stop_pending = True
            proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
            try:
                if proxy is not None:
                    await proxy.delete_user(self.user, self.name)
            finally:
                await self.user.stop(self.name)
            return "stopped"
        if idle >= timeout - self.idle_warning_s:
            at = datetime.fromtimestamp(last + timeout, timezone.utc).strftime("%H:%M:%S UTC")
            name = f"'{self.name}'" if self.name else "default"
            since = f"{int(idle // 60)} min" if idle >= 60 else f"{int(idle)} s"
            first = not self.idle_warning
            self.idle_warning = (f"Your {name} server has been idle for {since} and will be stopped at {at} "
                                 f"(tenant {self.tenant} idle time-out). Use it to keep it running; "
                                 f"you can start it again any time.")
            if first:
                self.log.info("%s: %s", self._log_name, self.idle_warning)
            return "warned"
        self.idle_warning = ""
        return "ok"

    async def _idle_loop(self):
        while True:
            await asyncio.sleep(self.idle_check_interval)
            try:
                if await self.check_idle() == "stopped":
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # keep watching; a failed check must not kill the loop
                self.log.exception("idle check of %s failed", self._log_name)


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


def _charge(req: dict) -> dict:
    """What a slice request counts against quota (the scheduling core's SliceRequest.charge)."""
    from job_runner.scheduling import SliceRequest

    try:
        c = SliceRequest.from_dict({k: v for k, v in req.items() if v is not None}).charge()
    except (TypeError, ValueError, KeyError):
        return {"gpu_milli": 0, "cpu_milli": 0, "memory_mib": 0}
    return {"gpu_milli": c.gpu_milli, "cpu_milli": c.cpu_milli, "memory_mib": c.memory_mib}


USER_OPTION_KEYS = ("tenant", "profile")


def _check_user_options(spawner, user_options: dict):
    unknown = set(user_options or {}) - set(USER_OPTION_KEYS)
    if unknown:
        raise web.HTTPError(400, f"unknown server options {sorted(unknown)}; known: {list(USER_OPTION_KEYS)}")
    for key in USER_OPTION_KEYS:
        value = (user_options or {}).get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise web.HTTPError(400, f"server option {key!r} must be a string (a {key} name)")


def _message(data) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)


async def _options_form(spawner) -> str:
    by_tenant = await spawner.profiles_by_tenant()
    tenants = [t for t in spawner.user_tenants() if t in by_tenant]
    if not tenants:
        return ("<p><strong>You are not in any tenant with GPU profiles yet.</strong> "
                "Ask an administrator to add you to your team's tenant.</p>")
    return render_profile_form(tenants, by_tenant, spawner.default_tenant or None, spawner.wait_for_gpu)
