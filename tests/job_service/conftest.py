"""Fixtures of the job service tests: a real JupyterHub (+ configurable-http-proxy), a real PostgreSQL,
the aistack service as a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time

import pytest
import requests
import yaml

from .helpers import DEPLOYMENT, PYTHON, SERVICE_TOKEN, PostgresServer, ServiceProcess, free_port

ADMIN_TOKEN = "aistack-test-admin-token-0123456789"
USERS = {"alice": "team-a", "bob": "team-a", "carol": "team-a", "dave": "team-b"}


@pytest.fixture(scope="session")
def deployment_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "deployment.yaml"
    path.write_text(yaml.safe_dump(DEPLOYMENT))
    return str(path)


@pytest.fixture(scope="session")
def postgres():
    pg = PostgresServer()
    try:
        pg.start()
    except subprocess.CalledProcessError as e:
        pg.stop()
        pytest.fail(f"could not start PostgreSQL: {e.stderr or e.stdout}")
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """A real JupyterHub with configurable-http-proxy; `aistack` is an external service the tests start."""
    if not shutil.which("configurable-http-proxy"):
        pytest.fail("configurable-http-proxy is missing: run scripts/setup.d/20-node.sh")
    d = tmp_path_factory.mktemp("hub")
    port, hub_port, proxy_api, svc_port = free_port(), free_port(), free_port(), free_port()
    from aistack_hub.hubconfig import SERVICE_SCOPES

    cfg = d / "jupyterhub_config.py"
    cfg.write_text(textwrap.dedent(f"""
        c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
        c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
        c.JupyterHub.db_url = "sqlite:///{d}/hub.sqlite"
        c.JupyterHub.cookie_secret_file = "{d}/cookie_secret"
        c.ConfigurableHTTPProxy.pid_file = "{d}/proxy.pid"
        c.JupyterHub.pid_file = "{d}/hub.pid"
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.Authenticator.admin_users = {{"root"}}
        c.JupyterHub.services = [
            {{"name": "aistack", "url": "http://127.0.0.1:{svc_port}", "api_token": "{SERVICE_TOKEN}",
             "oauth_no_confirm": True}},  # as aistack_hub.hubconfig registers it
            {{"name": "tester", "api_token": "{ADMIN_TOKEN}"}},
        ]
        c.JupyterHub.load_roles = [
            {{"name": "aistack-service", "scopes": {SERVICE_SCOPES!r}, "services": ["aistack"]}},
            {{"name": "admin", "services": ["tester"]}},
            {{"name": "user", "scopes": ["self", "access:services!service=aistack"]}},
        ]
        c.JupyterHub.load_groups = {{"team-a": {{"users": ["alice", "bob", "carol"]}}, "team-b": {{"users": ["dave"]}}}}
    """))
    log = open(d / "hub.log", "wb")
    proc = subprocess.Popen([os.path.join(os.path.dirname(PYTHON), "jupyterhub"), "-f", str(cfg)], cwd=d,
                            stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{hub_port}/hub/api"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterHub exited: {(d / 'hub.log').read_text()[-3000:]}")
        # The API answers before the proxy routes exist: JupyterHub adds them (check_routes) after trying
        # each service, and says so last with "is now running".
        if "JupyterHub is now running" in (d / "hub.log").read_text(errors="replace"):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("JupyterHub did not start in 90 s")
    admin = requests.Session()
    admin.headers["Authorization"] = f"token {ADMIN_TOKEN}"
    tokens = {}
    for user in list(USERS) + ["root", "eve"]:
        r = admin.post(f"{api}/users/{user}")
        assert r.status_code in (201, 409), r.text
        r = admin.post(f"{api}/users/{user}/tokens", json={"note": "test"})
        assert r.status_code == 201, r.text
        tokens[user] = r.json()["token"]
    # A token of alice's without the service's access scope.
    r = admin.post(f"{api}/users/alice/tokens", json={"note": "no access", "scopes": ["read:users:name!user"]})
    assert r.status_code == 201, r.text
    tokens["alice-noaccess"] = r.json()["token"]
    info = {"api": api, "proxy_url": f"http://127.0.0.1:{port}", "service_port": svc_port, "tokens": tokens,
            "admin_token": ADMIN_TOKEN}
    yield info
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def hub_service(hub, deployment_path, tmp_path_factory):
    """The aistack service (LocalExecutor, real papermill) behind the real hub, on SQLite."""
    d = tmp_path_factory.mktemp("svc")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "LocalExecutor": {"kill_grace_s": 2},
           "AIStackService": {"notebook_root": str(d / "homes" / "{user}")}}
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                         port=hub["service_port"], config=cfg)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture()
def as_user(hub, hub_service):
    def make(name):
        return hub_service.session(hub["tokens"][name])
    return make
