"""The spawn form: per tenant of the user, the profiles that tenant may use, each with free capacity and
quota left (the ``aistack`` service's ``GET profiles``); and the check of the options it posts.

Pure functions of their inputs, but ``options_form`` (the callable JupyterHub calls per request).
"""
from __future__ import annotations

import asyncio
import html

from tornado import web


def fmt_milli(m) -> str:
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
        parts.append(f"{fmt_milli(req.get('gpu_milli', 0))} GPU{on}")
        if req.get("gpu_mem_mib"):
            parts.append(f"{req['gpu_mem_mib'] / 1024:g} GiB GPU memory")
    elif kind == "mig":
        parts.append(f"MIG {req.get('mig_profile')}{on}")
    else:
        parts.append("no GPU")
    if req.get("cpu_milli"):
        parts.append(f"{fmt_milli(req['cpu_milli'])} CPU")
    if req.get("memory_mib"):
        parts.append(f"{req['memory_mib'] / 1024:g} GiB RAM")
    return " · ".join(parts)


def quota_text(quota_left) -> str:
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


def server_limit(profiles: list[dict]) -> tuple[int | None, int]:
    """(the tenant's per-user server limit or None, the servers the user holds there), as ``GET profiles``
    reports them with every profile."""
    info = next((p.get("server_limit") for p in profiles if isinstance(p.get("server_limit"), dict)), None) or {}
    return info.get("max_servers_per_user"), int(info.get("servers") or 0)


def limit_text(tenant: str, limit: int | None, held: int) -> str:
    """The per-user server limit in words, before Start, and what to do when it is reached."""
    if limit is None:
        return ""
    if held >= limit:
        return (f"You already have {held} of the {limit} server(s) tenant {tenant} allows each user: stop one "
                f"(on the Hub home page) before starting another here.")
    return f"Tenant {tenant} allows each user {limit} server(s) at once; you have {held}."


def render_profile_form(tenants: list[str], profiles_by_tenant: dict[str, list[dict]], chosen_tenant: str | None = None,
                        wait_for_gpu: bool = True) -> str:
    """The spawn form: one fieldset per tenant with its profiles (radio ``profile`` = ``tenant/slug``), the
    tenant's per-user server limit above them (a tenant at its limit offers nothing to pick; the hub's
    spawn page template disables Start when nothing can be picked).

    Pure function of its inputs (the benchmark renders it with 100 tenants)."""
    out = ['<div class="aistack-profiles">']
    if len(tenants) > 1:
        out.append('<p>You are in several tenants: the server is charged to the tenant whose profile you pick.</p>')
    first = True
    for tenant in tenants:
        profiles = profiles_by_tenant.get(tenant) or []
        t = html.escape(tenant)
        out.append(f'<fieldset class="mb-3" data-tenant="{t}"><legend>Tenant <strong>{t}</strong></legend>')
        limit, held = server_limit(profiles)
        full = limit is not None and held >= limit
        if limit is not None:
            cls = "alert alert-warning" if full else "text-muted"
            out.append(f'<p class="aistack-server-limit {cls}" data-server-limit="{t}">'
                       f'{html.escape(limit_text(tenant, limit, held))}</p>')
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
            notes.append(f"quota left: {html.escape(quota_text(p.get('quota_left')))}")
            if not fits:
                notes.append("<strong>over your tenant's quota</strong>")
            disabled = "" if fits and not full and (free or wait_for_gpu or free is None) else " disabled"
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


USER_OPTION_KEYS = ("tenant", "profile")


def options_from_form(formdata) -> dict:
    """``profile`` = ``tenant/slug`` from the form; also accepts separate ``tenant`` and ``profile``."""
    raw = (formdata.get("profile") or [""])[0]
    tenant = (formdata.get("tenant") or [""])[0]
    if "/" in raw:
        tenant, raw = raw.split("/", 1)
    return {"tenant": tenant, "profile": raw}


def check_user_options(spawner, user_options: dict):
    """JupyterHub's ``apply_user_options``: bad options are a 400 before anything is allocated."""
    unknown = set(user_options or {}) - set(USER_OPTION_KEYS)
    if unknown:
        raise web.HTTPError(400, f"unknown server options {sorted(unknown)}; known: {list(USER_OPTION_KEYS)}")
    for key in USER_OPTION_KEYS:
        value = (user_options or {}).get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise web.HTTPError(400, f"server option {key!r} must be a string (a {key} name)")


def user_tenants(user) -> list[str]:
    """The user's tenants: their JupyterHub groups (the service ignores groups that are not tenants)."""
    return sorted(g.name for g in getattr(user, "groups", []) or [])


async def profiles_by_tenant(fetch_profiles, tenants: list[str]) -> dict[str, list[dict]]:
    """``fetch_profiles(tenant)`` for each tenant, concurrently; tenants without profiles left out."""
    lists = await asyncio.gather(*(fetch_profiles(t) for t in tenants))
    return {t: ps for t, ps in zip(tenants, lists) if ps}


async def options_form(spawner) -> str:
    """The spawner's ``options_form`` (a callable: JupyterHub calls it with the spawner, per request)."""
    by_tenant = await spawner.profiles_by_tenant()
    tenants = [t for t in user_tenants(spawner.user) if t in by_tenant]
    if not tenants:
        return ("<p id='aistack-no-tenant-form'><strong>You are not in any tenant with GPU profiles yet, so no "
                "server can start.</strong> Ask an administrator to add you to your team's tenant, then reload "
                "this page.</p>")
    return render_profile_form(tenants, by_tenant, spawner.default_tenant or None, spawner.wait_for_gpu)
