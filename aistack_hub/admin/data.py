"""What the admin page shows, gathered from the aistack REST API with the viewer's own token, plus the
JupyterHub groups (tenant members) read with the service's token; alarms and the GPU-hours plot."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class APIError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Endpoints:
    api: str  # the aistack REST API base, ends with /
    hub_api: str  # JupyterHub's REST API base, ends with /
    service_token: str  # the service's own token (hub groups)

    @classmethod
    def from_settings(cls, settings: dict) -> "Endpoints":
        """The service's own API (``aistack_api_base``, set by aistack_hub.service), JupyterHub's from the
        environment a hub-managed service gets."""
        hub_api = os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api").rstrip("/") + "/"
        return cls(api=settings["aistack_api_base"], hub_api=hub_api,
                   service_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""))


async def call(base: str, token: str, method: str, path: str, body=None, query=None, timeout: float = 20):
    url = base + path.lstrip("/") + ("?" + urlencode(query) if query else "")
    req = HTTPRequest(url, method=method, headers={"Authorization": f"token {token}",
                                                   "Content-Type": "application/json"},
                      body=None if body is None else json.dumps(body), request_timeout=timeout,
                      allow_nonstandard_methods=True)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    if resp.code == 599:
        raise APIError(502, f"{method} {path}: {resp.error}")
    try:
        data = json.loads(resp.body) if resp.body else None
    except ValueError:
        data = None
    if resp.code >= 400:
        msg = data.get("message") if isinstance(data, dict) else None
        raise APIError(resp.code, msg or f"{method} {path} answered {resp.code}")
    return data


async def whoami(ep: Endpoints, token: str) -> dict:
    """``GET me``: the viewer, and the tenants they administer."""
    return await call(ep.api, token, "GET", "me")


async def gather(ep: Endpoints, token: str) -> dict:
    """Everything the page shows for this viewer. Raises APIError(403) for non-admins."""
    me = await whoami(ep, token)
    admin_of = {t["name"] for t in me.get("tenants", []) if t.get("admin")}
    if not me.get("admin") and not admin_of:
        raise APIError(403, f"{me.get('name')} is neither a JupyterHub admin nor a tenant admin")
    tenants = (await call(ep.api, token, "GET", "tenants"))["tenants"]
    if not me.get("admin"):
        tenants = [t for t in tenants if t.get("name") in admin_of]
    usage = await call(ep.api, token, "GET", "usage") or {}
    try:
        inventory = await call(ep.api, token, "GET", "inventory") or {}
    except APIError as e:
        if e.status != 403:
            raise
        inventory = {}  # tenant admins may not see the whole pool
    queued = await job_pages(ep, token, "queued")
    running = await job_pages(ep, token, "running")
    tenants = [normalise_tenant(t) for t in tenants]
    props: dict = {}
    groups = await hub_groups(ep, props)
    members = {t["name"]: sorted(groups.get(t["name"], [])) for t in tenants}
    sources = {t["name"]: membership_sources(props.get(t["name"]) or {}) for t in tenants}
    visible = {t["name"] for t in tenants}
    usage_t = {k: v for k, v in (usage.get("tenants") or {}).items() if me.get("admin") or k in visible}
    users = {}
    for user, per_tenant in (usage.get("users") or {}).items():
        for tenant, u in (per_tenant or {}).items():
            if me.get("admin") or tenant in visible:
                users.setdefault(user, {})[tenant] = u
    hours = [r for r in usage.get("gpu_hours") or [] if me.get("admin") or r.get("tenant") in visible]
    onboarding = await onboarding_facts(ep, groups, tenants) if me.get("admin") else {}
    service = await service_facts(ep, token) if me.get("admin") else {}
    return {
        "me": me,
        "tenants": tenants,
        "members": members,
        "sources": sources,
        "usage": usage_t,
        "users": users,
        "inventory": inventory,
        "queue": sorted(queued, key=lambda j: (j["queue_position"] is None, j["queue_position"] or 0)),
        "running": running,
        "gpu_hours": hours,
        "alarms": alarms(inventory, usage_t, queued),
        **onboarding,
        **service,
    }


async def _optional(ep: Endpoints, token: str, path: str, query=None):
    """An admin-only read model the page shows when the service has it (None if absent or refused)."""
    try:
        return await call(ep.api, token, "GET", path, query=query)
    except APIError:
        return None


async def service_facts(ep: Endpoints, token: str) -> dict:
    """For platform admins: slices the service freed by itself (reconciliation, placements gone) with the
    last reconciliation, the retention cleanup of finished jobs, and the scheduling loop's health."""
    health_url = ep.api.rstrip("/").rsplit("/", 1)[0] + "/health"  # the service prefix's /health
    req = HTTPRequest(health_url, headers={"Authorization": f"token {token}"}, request_timeout=10)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    try:
        health = json.loads(resp.body) if resp.code in (200, 503) else None
    except ValueError:
        health = None
    return {
        "released": await _optional(ep, token, "allocations/released", {"limit": 20}),
        "retention": await _optional(ep, token, "retention"),
        "health": health,
    }


async def job_pages(ep: Endpoints, token: str, state: str, page: int = 100, most: int = 2000) -> list:
    """``GET jobs`` in ``state``, following ``next`` (pages of ``page``: within any ``Limits.max_page_size``
    a deployment sets), at most ``most`` jobs (the page shows a queue, not an archive)."""
    data = await call(ep.api, token, "GET", "jobs", query={"state": state, "limit": page})
    jobs = list(data.get("jobs") or [])
    while data.get("next") and len(jobs) < most:
        data = await call(ep.api, token, "GET", "jobs?" + data["next"])
        jobs += data.get("jobs") or []
    return jobs[:most]


async def hub_paged(ep: Endpoints, path: str) -> list:
    """Every item of a JupyterHub list endpoint (it pages at ``api_page_max_limit``, 200 by default)."""
    out, offset = [], 0
    while True:
        url = ep.hub_api + path + ("&" if "?" in path else "?") + f"offset={offset}&limit=200"
        req = HTTPRequest(url, headers={"Authorization": f"token {ep.service_token}",
                                        "Accept": "application/jupyterhub-pagination+json"}, request_timeout=20)
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        if resp.code != 200:
            raise APIError(502 if resp.code >= 500 or resp.code == 599 else resp.code,
                           f"JupyterHub GET {path} answered {resp.code}")
        data = json.loads(resp.body)
        items = data.get("items", []) if isinstance(data, dict) else data
        out += items
        nxt = (data.get("_pagination") or {}).get("next") if isinstance(data, dict) else None
        if not nxt or not items:
            return out
        offset = nxt.get("offset", offset + len(items))


async def hub_groups(ep: Endpoints, properties: dict | None = None) -> dict[str, list[str]]:
    """JupyterHub's groups and their members (tenants are the groups that have a tenant row); each group's
    ``properties`` go into ``properties`` when given."""
    try:
        items = await hub_paged(ep, "groups")
    except APIError:
        return {}
    if properties is not None:
        properties.update({g["name"]: g.get("properties") or {} for g in items})
    return {g["name"]: list(g.get("users") or []) for g in items}


def membership_sources(props: dict) -> dict:
    """Who the directory (LDAP sign-in, ``aistack_hub.ldap``) made a member or a tenant admin; everyone else
    is "manual" (the admin page, the hub API). The directory takes back only what it gave."""
    from aistack_hub.ldap import LDAP_ADMINS, LDAP_MEMBERS

    return {"members": set(props.get(LDAP_MEMBERS) or ()), "admins": set(props.get(LDAP_ADMINS) or ())}


async def onboarding_facts(ep: Endpoints, groups: dict, tenants: list) -> dict:
    """For platform admins: sign-ups that wait for approval (NativeAuthenticator, through the hub
    endpoint of ``hubside``), JupyterHub groups that are not tenants, people in no tenant."""
    names = {t["name"] for t in tenants}
    try:
        signups = await call(ep.hub_api, ep.service_token, "GET", "aistack/signups")
    except APIError:
        signups = None  # another authenticator (LDAP, OAuth): no sign-ups to approve here
    try:
        hub_users = await hub_paged(ep, "users")
    except APIError:
        hub_users = []
    in_tenant = {u for g, us in groups.items() if g in names for u in us}
    admins = {u["name"] for u in hub_users if u.get("admin")}  # platform admins may charge any tenant
    people = {u["name"] for u in hub_users} | set((signups or {}).get("approved") or [])
    people -= admins
    return {
        "signups": signups,
        "other_groups": {g: sorted(us) for g, us in sorted(groups.items()) if g not in names},
        "without_tenant": sorted(people - in_tenant),
    }


QUOTA_KEYS = ("gpu_milli", "cpu_milli", "memory_mib", "max_servers_per_user", "max_running_jobs",
              "max_queued_jobs")


def normalise_tenant(t: dict) -> dict:
    """Every quota field present (None = unlimited), so the page can render any tenant."""
    t = dict(t)
    quotas = t.get("quotas") or {"any": {}}
    t["quotas"] = {g: {k: (q or {}).get(k) for k in QUOTA_KEYS} for g, q in quotas.items()}
    for key, default in (("weight", 1.0), ("admins", []), ("emergency_users", []), ("high_users", []),
                         ("max_high_share", None), ("idle_timeout_s", None), ("cohort", None)):
        t.setdefault(key, default)
    return t


async def group_members(ep: Endpoints, group: str) -> list[str]:
    try:
        g = await call(ep.hub_api, ep.service_token, "GET", f"groups/{quote(group, safe='')}")
    except APIError:
        return []
    return sorted(g.get("users") or [])


def alarms(inventory: dict, usage: dict, queued: list) -> list[dict]:
    """A GPU or node unhealthy, low utilisation (measured where the inventory has it, or allocated while jobs
    wait)."""
    out = []
    total = used = 0
    for node in inventory.get("nodes") or []:
        if not node.get("healthy", True):
            out.append({"level": "danger", "text": f"node {node['name']} is unhealthy"})
        for g in node.get("gpus") or []:
            total += 1000
            used += sum(int(w.get("gpu_milli") or 0) for w in g.get("workloads") or [])
            if g.get("healthy") is False:
                out.append({"level": "danger", "text": f"GPU {g.get('index')} of {node['name']} is gone or unhealthy"})
            util = g.get("utilization_pct")
            if util is not None and g.get("workloads") and util < 10:
                out.append({"level": "warning",
                            "text": f"GPU {g.get('index')} of {node['name']} is allocated but {util}% busy"})
    if total and used / total < 0.2 and queued:
        out.append({"level": "warning", "text": f"only {100 * used / total:.0f}% of GPU capacity is allocated "
                                                 f"while {len(queued)} job(s) wait"})
    return out


def gpu_hours_svg(rows: list[dict], width: int = 640, height: int = 220) -> str:
    """Stacked bars of GPU-hours per tenant per day, as inline SVG."""
    days = sorted({r["day"] for r in rows})
    tenants = sorted({r["tenant"] for r in rows})
    if not days:
        return '<p class="text-muted">No GPU use recorded yet.</p>'
    palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac"]
    color = {t: palette[i % len(palette)] for i, t in enumerate(tenants)}
    value = {(r["day"], r["tenant"]): float(r.get("gpu_hours") or 0) for r in rows}
    top = max(sum(value.get((d, t), 0) for t in tenants) for d in days) or 1.0
    left, bottom, plot_h = 48, 30, height - 50
    bar_w = max(4, (width - left - 10) // len(days) - 6)
    parts = [f'<svg class="gpu-hours" role="img" aria-label="GPU-hours per tenant per day" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        y = 10 + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 5}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{top * frac:.1f}</text>')
    for i, d in enumerate(days):
        x = left + 4 + i * (bar_w + 6)
        y = 10 + plot_h
        for t in tenants:
            v = value.get((d, t), 0)
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{color[t]}" '
                         f'data-day="{d}" data-tenant="{_esc(t)}" data-gpu-hours="{v:.2f}">'
                         f'<title>{_esc(t)} {d}: {v:.2f} GPU-hours</title></rect>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 34}" font-size="9" '
                     f'text-anchor="middle">{d[5:]}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<span class="me-2"><span style="display:inline-block;width:10px;height:10px;'
                      f'background:{color[t]}"></span> {_esc(t)}</span>' for t in tenants)
    return "".join(parts) + f'<div class="small">{legend}</div>'


def _esc(s) -> str:
    import html

    return html.escape(str(s), quote=True)
