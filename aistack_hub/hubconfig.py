"""The JupyterHub configuration of AIStack Hub, importable from a plain ``jupyterhub_config.py``::

    from aistack_hub.hubconfig import configure
    configure(c, "/etc/aistack/config.yaml")

``aistack-hub up`` does exactly this (with its command-line flags as overrides, and free loopback ports for
the internal endpoints); the Helm chart's hub does it with the file the chart renders.

The config file (``aistack_hub.config``) holds traitlets sections, applied to the hub as they are (they win
over the defaults set here), and the tenants/profiles/inventory data. What ``configure`` sets up:
- authentication: NativeAuthenticator (sign-up, admin approval at ``/hub/authorize``); the
  ``Authenticator.admin_users`` are approved on sign-up and are JupyterHub admins (LDAP/OAuth: docs/hub.md);
- tenants = JupyterHub groups (each tenant of the file is a group; ``JupyterHub.load_groups`` seeds members);
- the ``aistack`` service: hub-managed (``python -m aistack_hub.service``) or external
  (``AIStackHub.service_url``), with the roles it needs; an admin API token (``AIStackHub.admin_token``);
- the spawner: ``LocalGPUSpawner`` (or ``JupyterHub.spawner_class``) with the service's URL and token;
- template overrides: "GPU admin" in the navigation bar, idle warnings on every hub page.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
from urllib.parse import urlparse

import yaml
from traitlets import Integer, Unicode, default
from traitlets.config import Config, Configurable

from .config import DeploymentConfig, check_sections, read_file, split

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "default-config.yaml")
SERVICE_NAME = "aistack"
SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"
METRICS_SCOPE = "custom:aistack:metrics"  # aistack_hub.metrics checks it

# What the aistack service may do in the hub: read users and groups (tenant membership), edit group
# membership (tenant admins on the admin page), read servers (usage) and the hub's info.
SERVICE_SCOPES = [
    "list:users", "read:users", "read:users:groups", "read:users:name", "read:users:activity",
    "list:groups", "read:groups", "groups", "admin:groups",
    # create the hub user of someone added to a tenant before their first login; list pending sign-ups
    "admin:users",
    "read:servers", "read:hub", "list:services", "read:roles:users",
]
# Users reach the service with their own tokens (API, lab extension, admin page through OAuth).
USER_ROLE_SCOPES = ["self", f"access:services!service={SERVICE_NAME}"]
# The single-user server's own token may call the service too (the lab's server extension uses it).
SERVER_ROLE_SCOPES = [
    "users:activity!user", "access:servers!server", f"access:services!service={SERVICE_NAME}",
    "read:users:name!user", "read:users:groups!user",
]


class AIStackHub(Configurable):
    """What the hub needs to know about the deployment beyond JupyterHub's own traits."""

    data_dir = Unicode(
        ".aistack",
        help="""The hub's state folder: JupyterHub's SQLite database and cookie secret, the service token
        file, users' homes (LocalGPUSpawner) and, when the hub starts the service, the service's data.""",
    ).tag(config=True)

    service_url = Unicode(
        "",
        help="""URL of an external aistack service as the hub reaches it (e.g. http://aistack:10101, its own
        Deployment on Kubernetes). Empty: the hub starts the service itself (a hub-managed service) on
        127.0.0.1:service_port, with this config file.""",
    ).tag(config=True)

    service_port = Integer(8790, help="Port of the hub-managed aistack service (on 127.0.0.1).").tag(config=True)

    service_token = Unicode(
        help="""The aistack service's api_token, which is also the hub's token for the service (never shown to
        users). Default: $AISTACK_SERVICE_TOKEN (the chart's Secret), else a 0600 file in data_dir created on
        first start.""",
    ).tag(config=True)

    @default("service_token")
    def _service_token_default(self):
        return os.environ.get("AISTACK_SERVICE_TOKEN", "")

    admin_token = Unicode(
        help="""An admin API token for automation (the service ``aistack-automation`` with JupyterHub's admin
        role). Default: $AISTACK_ADMIN_TOKEN; empty: none.""",
    ).tag(config=True)

    @default("admin_token")
    def _admin_token_default(self):
        return os.environ.get("AISTACK_ADMIN_TOKEN", "")


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


def service_file(data: dict, discovered: dict) -> dict:
    """The config file the hub-managed service reads: the same file, with the inventory NVML discovered
    (when it found GPUs, or when none is configured) and where that inventory came from."""
    from job_runner.binding.discovery import inventory_fields

    out = dict(data)
    if discovered.get("source") == "nvml" or not out.get("inventory"):
        out["inventory"] = [inventory_fields(n) for n in discovered["nodes"]]
    out["AIStackService"] = {**(out.get("AIStackService") or {}), "inventory_source": discovered["source"]}
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


def _local_url(bind_url: str) -> str:
    """Where this machine reaches a bind URL ("http://:8081" or 0.0.0.0 -> 127.0.0.1)."""
    u = urlparse(bind_url)
    host = u.hostname if u.hostname not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
    return f"{u.scheme or 'http'}://{host}:{u.port or 80}{u.path.rstrip('/')}/"


def _defaults(data_dir: str) -> Config:
    """The hub's settings before the config file's sections (which win over them)."""
    d = Config()
    d.JupyterHub.bind_url = "http://127.0.0.1:8000"
    d.JupyterHub.hub_bind_url = "http://127.0.0.1:8081"
    d.JupyterHub.db_url = f"sqlite:///{os.path.join(data_dir, 'jupyterhub.sqlite')}"
    d.JupyterHub.cookie_secret_file = os.path.join(data_dir, "jupyterhub_cookie_secret")
    d.JupyterHub.pid_file = os.path.join(data_dir, "jupyterhub.pid")
    d.ConfigurableHTTPProxy.pid_file = os.path.join(data_dir, "jupyterhub-proxy.pid")
    d.JupyterHub.cleanup_servers = True
    d.JupyterHub.allow_named_servers = True
    d.JupyterHub.named_server_limit_per_user = 3
    d.JupyterHub.template_paths = [os.path.join(HERE, "templates")]
    # Sign-up with admin approval. NativeAuthenticator only authenticates approved users, so every
    # authenticated user is allowed.
    # NativeAuthenticator plus the pending sign-ups endpoint the admin page reads (aistack_hub.admin.hubside)
    d.JupyterHub.authenticator_class = "aistack_hub.admin.hubside.AIStackNativeAuthenticator"
    d.NativeAuthenticator.open_signup = False
    d.NativeAuthenticator.minimum_password_length = 8
    d.NativeAuthenticator.check_common_password = True
    d.Authenticator.admin_users = {"admin"}
    d.Authenticator.allow_all = True
    d.JupyterHub.spawner_class = "spawner.local.LocalGPUSpawner"
    d.Spawner.default_url = "/lab"
    d.Spawner.http_timeout = 60
    d.LocalGPUSpawner.data_dir = data_dir
    return d


def _section(config: Config, name: str) -> dict:
    return dict(config[name]) if name in config else {}


def configure(c, config_path: str | None = None, overrides: Config | None = None) -> dict:
    """Fill the JupyterHub config ``c`` from the config file (default: the packaged example) and
    ``overrides`` (``aistack-hub up``'s flags; they win over the file). Returns facts for the caller."""
    path = config_path or DEFAULT_CONFIG
    data = read_file(path)
    sections, _ = split(data)
    if overrides:
        sections.merge(overrides)
    check_sections(sections, path)
    try:
        deployment = DeploymentConfig.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    hub = AIStackHub(config=sections)
    data_dir = os.path.abspath(hub.data_dir)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    service_token = hub.service_token or read_secret(os.path.join(data_dir, "aistack-service-token"))
    managed = not hub.service_url
    service_url = f"http://127.0.0.1:{hub.service_port}" if managed else hub.service_url.rstrip("/")
    api_url = f"{service_url}{SERVICE_PREFIX}api/"

    final = _defaults(data_dir)
    final.merge(sections)
    user_hub = _section(sections, "JupyterHub")
    discovered = {"source": "configured", "nodes": []}
    if managed:
        from job_runner.binding.discovery import discover

        discovered = discover(data.get("inventory"))
        svc_path = os.path.join(data_dir, "aistack-service.yaml")
        with open(svc_path, "w") as f:
            yaml.safe_dump(service_file(data, discovered), f, sort_keys=False)
        service = {"name": SERVICE_NAME, "url": service_url, "cwd": data_dir,
                   "command": [sys.executable, "-m", "aistack_hub.service", f"--config={svc_path}",
                               f"--data-dir={data_dir}"],
                   "environment": {k: os.environ[k] for k in ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG",
                                                              "AISTACK_DB_URL") if os.environ.get(k)}}
        service["environment"]["PYTHONUNBUFFERED"] = "1"
    else:
        service = {"name": SERVICE_NAME, "url": service_url}
    service.update({
        "api_token": service_token,
        "oauth_no_confirm": True,
        "display": False,  # reached through the "GPU admin" link and the lab extension
        "oauth_client_allowed_scopes": [f"access:services!service={SERVICE_NAME}", "read:users!user",
                                        "read:users:groups!user"],
    })
    services = [service]
    roles = [
        {"name": "aistack-service", "description": "the aistack job service",
         "scopes": SERVICE_SCOPES, "services": [SERVICE_NAME]},
        {"name": "user", "scopes": USER_ROLE_SCOPES},
        {"name": "server", "scopes": SERVER_ROLE_SCOPES},
    ]
    if hub.admin_token:
        services.append({"name": "aistack-automation", "api_token": hub.admin_token})
        roles.append({"name": "admin", "services": ["aistack-automation"]})
    # Lists and dicts that combine ours with the file's (the file's entries are added, not replacing ours).
    final.JupyterHub.services = services + list(user_hub.get("services") or [])
    final.JupyterHub.load_roles = roles + list(user_hub.get("load_roles") or [])
    # Who may read every series of the service's /metrics (a Prometheus service's role, say; docs/hub.md).
    final.JupyterHub.custom_scopes = {
        METRICS_SCOPE: {"description": "Read every tenant's series of the aistack service's /metrics."},
        **(user_hub.get("custom_scopes") or {})}
    groups = {t.name: {"users": []} for t in deployment.tenants}  # tenants are groups
    groups.update(user_hub.get("load_groups") or {})
    final.JupyterHub.load_groups = groups
    final.JupyterHub.template_vars = {
        "aistack_admin_url": SERVICE_PREFIX + "admin/",
        "aistack_show_admin": TenantAdminLink(deployment.tenants, api_url, service_token),
        "aistack_idle_warnings": idle_warnings,
        "aistack_home": _home_hints(deployment.tenants, api_url, service_token, final.Authenticator.admin_users),
        **(user_hub.get("template_vars") or {}),
    }
    # Where single-user servers (and the lab extension in them) reach the service directly.
    final.Spawner.environment = {"AISTACK_SERVICE_URL": f"{service_url}{SERVICE_PREFIX}",
                                 **_section(sections, "Spawner").get("environment", {})}
    final.GPUSliceSpawnerMixin.aistack_api_url = api_url
    final.GPUSliceSpawnerMixin.aistack_token = service_token
    # directory sign-in writes tenant admins from LDAP groups to the service (aistack_hub.ldap, docs/ldap.md)
    final.AIStackLDAPAuthenticator.aistack_api_url = api_url
    final.AIStackLDAPAuthenticator.aistack_token = service_token
    if os.environ.get("AISTACK_HUB_DB_URL"):  # a database URL with a password, from a Secret
        final.JupyterHub.db_url = os.environ["AISTACK_HUB_DB_URL"]
    proxy = _section(sections, "ConfigurableHTTPProxy")
    if proxy.get("should_start", True) and "command" not in proxy:
        final.ConfigurableHTTPProxy.command = [configurable_http_proxy()]
    c.merge(final)

    return {
        "url": _local_url(final.JupyterHub.bind_url),
        "hub_api": _local_url(final.JupyterHub.hub_bind_url) + "hub/api/",
        "service_url": service_url,
        "api_url": api_url,
        "service_token": service_token,
        "inventory_source": discovered["source"],
        "gpus": sum(len(n.get("gpus", [])) if isinstance(n.get("gpus"), list) else int(n.get("gpus") or 0)
                    for n in discovered["nodes"]),
        "admin_users": sorted(final.Authenticator.admin_users),
        "data_dir": data_dir,
        "tenants": [t.name for t in deployment.tenants],
    }


def reconcile_allocations(service_api: str, token: str, log=print) -> list[int]:
    """Ask the service to release now the server slices whose server is neither running nor starting in the
    hub (``POST allocations/reconcile``; the service also does it every
    ``AIStackService.reconcile_interval_s``, over every page of the hub's users: ``aistack_hub.services.reconcile``).

    Why now: when JupyterHub shuts down it stops its services *before* its servers, so the servers' slices
    cannot be released then. Run after the hub is up (``aistack-hub up`` does). Uses the hub's token for the
    service. Returns the released allocation ids."""
    import urllib.request

    req = urllib.request.Request(service_api.rstrip("/") + "/allocations/reconcile", data=b"{}", method="POST",
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        released = json.loads(r.read()).get("released", [])
    for a in released:
        log(f"released allocation {a['id']} of {a.get('user')}:{a.get('server_name') or '(default)'}: "
            f"its server is not running")
    return [a["id"] for a in released]


class TenantAdminLink:
    """Template variable: show "GPU admin" to JupyterHub admins and tenant admins.

    Tenant admins change on the admin page (the service's database), so the set is refreshed from
    ``GET tenants`` in the background at most every ``refresh_s`` (templates are rendered synchronously);
    until the first answer, the config file's tenant admins count."""

    def __init__(self, tenants: list, api_url: str, token: str, refresh_s: float = 30.0):
        self.names = {a for t in tenants for a in t.admins}
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


def _home_hints(tenants, api_url, token, admin_users):
    """The home and spawn pages' ``aistack_home`` (no tenant: whom to ask; server limits before Start)."""
    from .admin.hubside import HomeHints, TenantDirectory

    return HomeHints(TenantDirectory(tenants, api_url, token), admin_users)


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
