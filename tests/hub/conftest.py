"""A real AIStack Hub for the tests: ``aistack-hub up`` (JupyterHub + configurable-http-proxy + the aistack
service) on free loopback ports, with a test deployment config.

This machine has no GPU: NVML finds none, so the configured inventory of the test config (two A100-80GB,
the first MIG-enabled) stands in for real GPUs. Slices are still allocated by the real scheduler and pinned
in the real server processes' environment; nothing here needs a GPU to be meaningful except running CUDA.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "Tr0ub4dor&3-aistack"
ADMIN_TOKEN = "test-admin-token-" + os.urandom(8).hex()

TEST_CONFIG = {
    "hub": {
        "admin_users": ["admin"],
        "members": {"team-a": [], "team-b": [], "team-c": ["carol"], "team-d": ["carol"]},
        "named_server_limit_per_user": 5,
        "idle_warning_s": 60,
        "idle_check_interval_s": 2,
    },
    "tenants": [
        {"name": "team-a", "admins": [], "quotas": {"any": {"gpu_milli": 1000, "max_servers_per_user": 3}}},
        {"name": "team-b", "admins": ["bob"], "quotas": {"any": {"gpu_milli": 500}}},
        {"name": "team-c", "quotas": {"any": {"gpu_milli": 500}}, "idle_timeout_s": 20},
        {"name": "team-d", "quotas": {}},  # no quota: only the pool's size limits it
    ],
    "profiles": [
        {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "quarter", "display_name": "1/4 GPU",
         "request": {"kind": "share", "gpu_milli": 250, "gpu_mem_mib": 12288, "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "half", "display_name": "1/2 GPU",
         "request": {"kind": "share", "gpu_milli": 500, "gpu_mem_mib": 24576, "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 500,
                                                               "memory_mib": 1024}},
    ],
    "inventory": [
        {"name": "test-node", "cpu_milli": 16000, "memory_mib": 65536,
         "gpus": [{"model": "A100-80GB", "mig_enabled": True}, {"model": "A100-80GB"}]},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tools():
    missing = [t for t in ("configurable-http-proxy",) if not shutil.which(t)
               and not os.path.exists(os.path.join(REPO, "node_modules", ".bin", t))]
    if missing:
        pytest.fail(f"missing {missing}: run `bash scripts/setup.sh test` (scripts/setup.d/20-node.sh installs it)")


class Hub:
    """The running hub and helpers to talk to it as a browser (cookies) or with tokens."""

    def __init__(self, url: str, data_dir: str, proc: subprocess.Popen, log_path: str):
        self.url = url
        self.data_dir = data_dir
        self.proc = proc
        self.log_path = log_path
        self.admin_token = ADMIN_TOKEN

    def log_tail(self, n=4000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-n:]

    # --- browser-like sessions
    def session(self) -> requests.Session:
        return requests.Session()

    def _xsrf(self, s: requests.Session, page: str) -> str:
        r = s.get(self.url + page)
        r.raise_for_status()
        return s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf") or ""

    def signup(self, name: str) -> str:
        s = self.session()
        xsrf = self._xsrf(s, "hub/signup")
        r = s.post(self.url + "hub/signup", data={"username": name, "signup_password": PASSWORD,
                                                  "signup_password_confirmation": PASSWORD, "_xsrf": xsrf})
        r.raise_for_status()
        return r.text

    def login(self, name: str, password: str = PASSWORD) -> requests.Session | None:
        s = self.session()
        xsrf = self._xsrf(s, "hub/login")
        r = s.post(self.url + "hub/login", data={"username": name, "password": password, "_xsrf": xsrf},
                   allow_redirects=True)
        if not s.cookies.get("jupyterhub-hub-login"):
            return None
        return s

    # --- API
    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {token or self.admin_token}"
        return requests.request(method, self.url + "hub/api/" + path, headers=headers, timeout=60, **kw)

    def service(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {token or self.admin_token}"
        return requests.request(method, self.url + "services/aistack/api/" + path, headers=headers, timeout=60, **kw)

    def wait_ready(self, user: str, server: str, token: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.api("GET", f"users/{user}", token)
            r.raise_for_status()
            srv = r.json().get("servers", {}).get(server)
            if srv and srv.get("ready"):
                return srv
            if not srv:
                raise AssertionError(f"server {user}/{server!r} vanished while starting:\n{self.log_tail()}")
            time.sleep(0.3)
        raise AssertionError(f"server {user}/{server!r} not ready after {timeout}s:\n{self.log_tail()}")


def start_hub(config: dict, tmp: str, extra_env: dict | None = None, log_name: str = "hub.log") -> Hub:
    require_tools()
    data_dir = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(config, f)
    port = free_port()
    env = dict(os.environ, AISTACK_ADMIN_TOKEN=ADMIN_TOKEN, **(extra_env or {}))
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.path.join(REPO, "node_modules", ".bin"),
                                   env.get("PATH", "")])
    log_path = os.path.join(tmp, log_name)
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "aistack_hub.app", "up", "--port", str(port),
                             "--data-dir", data_dir, "--config", cfg], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp, start_new_session=True)
    hub = Hub(f"http://127.0.0.1:{port}/", data_dir, proc, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"aistack-hub up exited with {proc.returncode}:\n{hub.log_tail()}")
        if "AIStack Hub is up" in open(log_path, errors="replace").read():
            # the service must answer too
            try:
                if requests.get(hub.url + "services/aistack/api/openapi.json", timeout=2).status_code < 500:
                    return hub
            except requests.RequestException:
                pass
        time.sleep(0.3)
    stop_hub(hub)
    raise AssertionError(f"the hub did not come up in 120 s:\n{hub.log_tail()}")


def stop_hub(hub: Hub):
    if hub.proc.poll() is None:
        hub.proc.send_signal(signal.SIGTERM)
        try:
            hub.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(hub.proc.pid, signal.SIGKILL)
            hub.proc.wait(10)


@pytest.fixture(scope="module")
def hub():
    tmp = tempfile.mkdtemp(prefix="aistack-hub-test-")
    os.chmod(tmp, 0o711)  # the notebook servers' unprivileged account must reach its home below
    h = start_hub(TEST_CONFIG, tmp)
    try:
        yield h
    finally:
        stop_hub(h)
        artifacts = os.path.join(REPO, "test-artifacts", "hub")
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(h.log_path, os.path.join(artifacts, "hub.log"))
        shutil.rmtree(tmp, ignore_errors=True)


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)[:3000]
