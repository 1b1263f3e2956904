"""Start a real AIStack Hub for tests and benchmarks: ``aistack-hub up`` (JupyterHub + configurable-http-proxy +
the aistack service) on free loopback ports, with a config dict written as its deployment config file.

The one way to start a hub in tests (tests/hub, tests/labextension, benchmarks)::

    from tests.hub.launcher import start_hub, stop_hub
    hub = start_hub({"Authenticator": {"admin_users": ["admin"]}, "tenants": [...], ...}, tmp_dir)
    ...
    stop_hub(hub)

``hub.admin_token`` is an admin API token (``AIStackHub.admin_token``, from ``$AISTACK_ADMIN_TOKEN``).
A hub in front of an external service the test starts itself: ``AIStackHub: {service_url: ...}`` in the
config and ``wait_for_service=False``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "Tr0ub4dor&3-aistack"
ADMIN_TOKEN = "test-admin-token-" + os.urandom(8).hex()


class HubStartError(RuntimeError):
    """The hub did not come up (the message has the end of its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tools():
    missing = [t for t in ("configurable-http-proxy",) if not shutil.which(t)
               and not os.path.exists(os.path.join(REPO, "node_modules", ".bin", t))]
    if missing:
        raise HubStartError(f"missing {missing}: run `bash scripts/setup.sh test` (scripts/setup.d/20-node.sh "
                            f"installs it)")


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

    def approved_member(self, name: str, tenant: str, note: str = "test") -> str:
        """``name`` signed up with PASSWORD, approved by a signed-up admin, in ``tenant``; returns a token."""
        assert "sent to the admin" in self.signup(name)
        self.signup("admin")
        admin = self.login("admin")
        assert admin is not None, self.log_tail()
        assert admin.get(self.url + f"hub/authorize/{name}").status_code == 200
        assert self.login(name) is not None, f"{name} cannot sign in:\n{self.log_tail()}"
        r = self.api("POST", f"groups/{tenant}/users", json={"users": [name]})
        assert r.status_code == 200, r.text
        r = self.api("POST", f"users/{name}/tokens", json={"note": note})
        assert r.status_code == 201, r.text
        return r.json()["token"]

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


def start_hub(config: dict, tmp: str, extra_env: dict | None = None, log_name: str = "hub.log",
              wait_for_service: bool = True, timeout: float = 120) -> Hub:
    """``aistack-hub up`` with ``config`` (traitlets sections and data, as in the YAML file) in ``tmp``;
    returns once the hub says it is up and (``wait_for_service``) the aistack service answers through it."""
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HubStartError(f"aistack-hub up exited with {proc.returncode}:\n{hub.log_tail()}")
        if "AIStack Hub is up" in open(log_path, errors="replace").read():
            if not wait_for_service:
                return hub
            # the service must answer too
            try:
                if requests.get(hub.url + "services/aistack/api/openapi.json", timeout=2).status_code < 500:
                    return hub
            except requests.RequestException:
                pass
        time.sleep(0.3)
    stop_hub(hub)
    raise HubStartError(f"the hub did not come up in {timeout:.0f} s:\n{hub.log_tail()}")


def stop_process(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL of its whole process group after ``grace_s`` (started with start_new_session)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def stop_hub(hub: Hub):
    stop_process(hub.proc, 30)


@contextlib.contextmanager
def running_hub(config: dict, prefix: str, artifacts: str):
    """A hub in a fresh folder for a test module; its log is kept under test-artifacts/<artifacts>/ after.

    A hub that does not start fails the test with its log (never a skip)."""
    import pytest

    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o711)  # the notebook servers' unprivileged account must reach its home below
    try:
        h = start_hub(config, tmp)
    except HubStartError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(str(e), pytrace=False)
    try:
        yield h
    finally:
        stop_hub(h)
        folder = os.path.join(REPO, "test-artifacts", artifacts)
        os.makedirs(folder, exist_ok=True)
        shutil.copy(h.log_path, os.path.join(folder, "hub.log"))
        shutil.rmtree(tmp, ignore_errors=True)




def run_browser_script(script: str, env: dict, timeout: float, hub: Hub | None = None) -> dict:
    """``node <script>`` (a Chromium script of the browser tests, in tests/browser/lab_session.js' format) with
    ``env`` added; the one JSON line of results it prints (``steps``, ``error``, the test's own fields), or a
    failure with the script's output and the hub's log."""
    import json

    out = subprocess.run(["node", script], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    res = json.loads(lines[-1])
    log = hub.log_tail(3000) if hub is not None else ""
    assert not res.get("error"), f"{res['error']}\nsteps: {res.get('steps')}\n{out.stderr[-2000:]}\n{log}"
    return res
