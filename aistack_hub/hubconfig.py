"""The JupyterHub configuration of AIStack Hub, importable from a plain ``jupyterhub_config.py``::

    from aistack_hub.hubconfig import configure
    configure(c, config_path="/etc/aistack/config.yaml", data_dir="/srv/aistack")

``aistack-hub up`` does exactly this (with free loopback ports for the internal endpoints).

What it sets up:
- authentication: NativeAuthenticator (sign-up, admin approval at ``/hub/authorize``); the users listed in
  ``hub.admin_users`` are approved on sign-up and are JupyterHub admins (LDAP/OAuth: see docs/hub.md);
- tenants = JupyterHub groups (``hub.members`` seeds their members), the ``aistack`` service as a
  hub-managed service (``python -m aistack_hub.service``) with the roles it needs;
- the spawner: ``LocalGPUSpawner`` with its service URL and token, named servers with a per-user cap;
- ``AISTACK_ADMIN_TOKEN`` (env) as an admin API token (service ``aistack-automation`` with the admin role);
- template overrides: "GPU admin" in the navigation bar, idle warnings on every hub page.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "default-config.yaml")
SERVICE_NAME = "aistack"
SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"

# What the aistack service may do in the hub: read users and groups (tenant membership), edit group
# membership (tenant admins on the admin page), read servers (usage) and the hub's info.
SERVICE_SCOPES = [
    "list:users", "read:users", "read:users:groups", "read:users:name", "read:users:activity",
    "list:groups", "read:groups", "groups", "admin:groups",
    "read:servers", "read:hub", "list:services", "read:roles:users",
]
# Users reach the service with their own tokens (API, lab extension, admin page through OAuth).
USER_ROLE_SCOPES = ["self", f"access:services!service={SERVICE_NAME}"]
# The single-user server's own token may call the service too (the lab's server extension uses it).
SERVER_ROLE_SCOPES = [
    "users:activity!user", "access:servers!server", f"access:services!service={SERVICE_NAME}",
    "read:users:name!user", "read:users:groups!user",
]
HUB_KEYS = {"admin_users", "members", "open_signup", "named_server_limit_per_user", "idle_warning_s",
            "idle_check_interval_s",
            "wait_for_gpu", "queue_timeout_s", "run_as", "minimum_password_length", "announcement"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_secret(path: str, nbytes: int = 32) -> str:
    """A secret kept in a 0600 file, created on first use (stable across restarts)."""
    if os.path.exists(path):
        with open(path) as f:
            value = f.read().strip()
        if value:
            return value
    value = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def load_deployment(config_path: str | None) -> dict:
    """The raw deployment config (YAML mapping); the packaged example when no path is given."""
    path = config_path or DEFAULT_CONFIG
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    hub = data.get("hub") or {}
    unknown = set(hub) - HUB_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys in hub: {sorted(unknown)} (known: {sorted(HUB_KEYS)})")
    return data


def service_config(data: dict, discovered: dict) -> dict:
    """The config file the service reads: the deployment config without the hub section, with the
    inventory NVML discovered (when it found GPUs) instead of the configured one."""
    from job_runner.binding.discovery import inventory_fields

    out = {k: v for k, v in data.items() if k != "hub"}
    if discovered.get("source") == "nvml":
        out["inventory"] = [inventory_fields(n) for n in discovered["nodes"]]
    elif not out.get("inventory"):
        out["inventory"] = [inventory_fields(n) for n in discovered["nodes"]]
    return out


def configurable_http_proxy() -> str:
    """The configurable-http-proxy executable (PATH, else the repo's node_modules)."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    repo = os.path.dirname(HERE)
    local = os.path.join(repo, "node_modules", ".bin", "configurable-http-proxy")
    if os.path.exists(local):
        return local
    raise RuntimeError("configurable-http-proxy not found: run `bash scripts/setup.sh run` "
                       "(or `npm install -g configurable-http-proxy@4`)")


def configure(
    c,
    config_path: str | None = None,
    data_dir: str = ".aistack",
    ip: str = "127.0.0.1",
    port: int = 8000,
    hub_port: int = 8081,
    service_port: int = 8790,
    proxy_api_port: int | None = None,
    admin_token: str | None = None,
    spawner_class: str = "spawner.local.LocalGPUSpawner",
) -> dict:
    """Fill the JupyterHub config ``c``. Returns facts for the caller (URLs, service token, ...)."""
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    data = load_deployment(config_path)
    hub = data.get("hub") or {}

    from job_runner.binding.discovery import discover

    discovered = discover(data.get("inventory"))
    svc_config_path = os.path.join(data_dir, "aistack-service.yaml")
    with open(svc_config_path, "w") as f:
        yaml.safe_dump(service_config(data, discovered), f, sort_keys=False)

    service_token = read_secret(os.path.join(data_dir, "aistack-service-token"))
    service_url = f"http://127.0.0.1:{service_port}"
    api_url = f"{service_url}{SERVICE_PREFIX}api/"
    admin_token = admin_token if admin_token is not None else os.environ.get("AISTACK_ADMIN_TOKEN", "")

    # --- the hub itself
    c.JupyterHub.bind_url = f"http://{ip}:{port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
    c.JupyterHub.db_url = f"sqlite:///{os.path.join(data_dir, 'jupyterhub.sqlite')}"
    c.JupyterHub.cookie_secret_file = os.path.join(data_dir, "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = os.path.join(data_dir, "jupyterhub.pid")
    c.ConfigurableHTTPProxy.pid_file = os.path.join(data_dir, "jupyterhub-proxy.pid")
    c.ConfigurableHTTPProxy.command = [configurable_http_proxy()]
    if proxy_api_port:
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = int(hub.get("named_server_limit_per_user", 3))
    c.JupyterHub.template_paths = [os.path.join(HERE, "templates")]
    c.JupyterHub.template_vars = {
        "aistack_admin_url": SERVICE_PREFIX + "admin/",
        "aistack_show_admin": _show_admin_link(data, api_url, service_token),
        "aistack_idle_warnings": idle_warnings,
    }
    if hub.get("announcement"):
        c.JupyterHub.template_vars["announcement"] = str(hub["announcement"])

    # --- authentication: sign-up with admin approval
    c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
    c.NativeAuthenticator.open_signup = bool(hub.get("open_signup", False))
    c.NativeAuthenticator.minimum_password_length = int(hub.get("minimum_password_length", 8))
    c.NativeAuthenticator.check_common_password = True
    c.Authenticator.admin_users = set(hub.get("admin_users", ["admin"]))
    # NativeAuthenticator only authenticates approved users, so every authenticated user is allowed.
    c.Authenticator.allow_all = True

    # --- tenants = groups
    members = hub.get("members") or {}
    groups = {}
    for t in data.get("tenants") or []:
        groups[t["name"]] = {"users": list(members.get(t["name"], []))}
    for name in set(members) - set(groups):
        raise ValueError(f"hub.members names {name!r}, which is not a tenant")
    c.JupyterHub.load_groups = groups

    # --- the aistack service, hub-managed
    env = {
        "AISTACK_CONFIG": svc_config_path,
        "AISTACK_DATA_DIR": data_dir,
        "AISTACK_DB_URL": f"sqlite:///{os.path.join(data_dir, 'aistack.sqlite')}",
        "AISTACK_INVENTORY_SOURCE": discovered["source"],
        "AISTACK_SERVICE_PORT": str(service_port),
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "AISTACK_LOG_LEVEL"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    services = [{
        "name": SERVICE_NAME,
        "url": service_url,
        "command": [sys.executable, "-m", "aistack_hub.service"],
        "api_token": service_token,
        "environment": env,
        "cwd": data_dir,
        "oauth_no_confirm": True,
        "display": False,  # reached through the "GPU admin" link and the lab extension
        "oauth_client_allowed_scopes": [f"access:services!service={SERVICE_NAME}", "read:users!user",
                                        "read:users:groups!user"],
    }]
    roles = [
        {"name": "aistack-service", "description": "the aistack job service",
         "scopes": SERVICE_SCOPES, "services": [SERVICE_NAME]},
        {"name": "user", "scopes": USER_ROLE_SCOPES},
        {"name": "server", "scopes": SERVER_ROLE_SCOPES},
    ]
    if admin_token:
        services.append({"name": "aistack-automation", "api_token": admin_token})
        roles.append({"name": "admin", "services": ["aistack-automation"]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles

    # --- the spawner
    c.JupyterHub.spawner_class = spawner_class
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 60
    # Where single-user servers (and the lab extension in them) reach the service directly.
    c.Spawner.environment = {"AISTACK_SERVICE_URL": f"{service_url}{SERVICE_PREFIX}"}
    c.GPUSliceSpawnerMixin.aistack_api_url = api_url
    c.GPUSliceSpawnerMixin.aistack_token = service_token
    c.GPUSliceSpawnerMixin.wait_for_gpu = bool(hub.get("wait_for_gpu", True))
    c.GPUSliceSpawnerMixin.queue_timeout = int(hub.get("queue_timeout_s", 3600))
    c.GPUSliceSpawnerMixin.idle_warning_s = int(hub.get("idle_warning_s", 300))
    c.GPUSliceSpawnerMixin.idle_check_interval = int(hub.get("idle_check_interval_s", 30))
    c.GPUSliceSpawnerMixin.tenant_idle_timeouts = {
        t["name"]: int(t["idle_timeout_s"]) for t in data.get("tenants") or [] if t.get("idle_timeout_s")
    }
    c.LocalGPUSpawner.data_dir = data_dir
    if hub.get("run_as"):
        c.LocalGPUSpawner.run_as = hub["run_as"]

    return {
        "url": f"http://{'127.0.0.1' if ip in ('0.0.0.0', '') else ip}:{port}/",
        "hub_api": f"http://127.0.0.1:{hub_port}/hub/api/",
        "service_url": service_url,
        "api_url": api_url,
        "service_token": service_token,
        "inventory_source": discovered["source"],
        "gpus": sum(len(n.get("gpus", [])) for n in discovered["nodes"]),
        "admin_users": sorted(c.Authenticator.admin_users),
        "data_dir": data_dir,
        "tenants": sorted(groups),
    }


def reconcile_allocations(hub_api: str, service_api: str, token: str, log=print) -> list[int]:
    """Release the service's server allocations whose server is not running or starting in the hub.

    Why: when JupyterHub shuts down it stops its services *before* its servers, so the servers' slices
    cannot be released then; they would hold quota until their user starts that server again. Run after
    the hub is up (``aistack-hub up`` does). Uses the service's own token (the hub's, for the service;
    ``read:servers`` for the hub). Returns the released allocation ids."""
    import urllib.request

    def get(url):
        req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    users = get(hub_api.rstrip("/") + "/users?state=active&limit=10000")
    if isinstance(users, dict):
        users = users.get("items", [])
    # an active user's "servers" holds exactly the servers that run or are starting
    live = {(u["name"], name) for u in users for name in (u.get("servers") or {})}
    released = []
    for a in get(service_api.rstrip("/") + "/allocations").get("allocations", []):
        if (a.get("user"), a.get("server_name") or "") in live:
            continue
        req = urllib.request.Request(service_api.rstrip("/") + f"/allocations/{a['id']}", method="DELETE",
                                     headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=30):
            pass
        released.append(a["id"])
        log(f"released allocation {a['id']} of {a.get('user')}:{a.get('server_name') or '(default)'}: "
            f"its server is not running")
    return released


class TenantAdminLink:
    """Template variable: show "GPU admin" to JupyterHub admins and tenant admins.

    Tenant admins change on the admin page (the service's database), so the set is refreshed from
    ``GET tenants`` in the background at most every ``refresh_s`` (templates are rendered synchronously);
    until the first answer, the config file's tenant admins count."""

    def __init__(self, data: dict, api_url: str, token: str, refresh_s: float = 30.0):
        self.names = {a for t in data.get("tenants") or [] for a in t.get("admins") or ()}
        self.api_url, self.token, self.refresh_s = api_url, token, refresh_s
        self.last = float("-inf")
        self.task = None

    def __call__(self, user) -> bool:
        self._maybe_refresh()
        return bool(user) and (bool(getattr(user, "admin", False)) or user.name in self.names)

    def _maybe_refresh(self):
        import asyncio
        import time

        if time.monotonic() - self.last < self.refresh_s or (self.task and not self.task.done()):
            return
        try:
            self.task = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:  # no running loop (rendered outside the hub): keep what we know
            return
        self.last = time.monotonic()

    async def refresh(self):
        from tornado.httpclient import AsyncHTTPClient

        try:
            r = await AsyncHTTPClient().fetch(self.api_url + "tenants", request_timeout=10,
                                              headers={"Authorization": f"token {self.token}"})
            data = json.loads(r.body)
            tenants = data.get("tenants", data.get("items", [])) if isinstance(data, dict) else data
            self.names = {a for t in tenants for a in t.get("admins") or ()}
        except Exception:  # noqa: BLE001 - the link is a convenience; the page checks permissions itself
            pass


def _show_admin_link(data: dict, api_url: str = "", token: str = ""):
    return TenantAdminLink(data, api_url, token)


def idle_warnings(user) -> list[str]:
    """Idle warnings of the user's running servers (set by GPUSliceSpawnerMixin.check_idle)."""
    if not user:
        return []
    out = []
    for spawner in getattr(user, "spawners", {}).values():
        text = getattr(spawner, "idle_warning", "")
        if text:
            out.append(text)
    return out


def dump_facts(facts: dict) -> str:
    return json.dumps({k: v for k, v in facts.items() if k != "service_token"}, indent=2)
