"""The admin page's login across two replicas behind a real JupyterHub (dummy authenticator, the hub's
OAuth provider, configurable-http-proxy), both on one PostgreSQL. Replica A is the one the hub's proxy
routes to; replica B is reached on its own port (as a Service routes a request to either pod)."""
from urllib.parse import urljoin

import pytest
import requests

from tests.replicas.helpers import replica

pytestmark = pytest.mark.postgres
NOOP = ("--executor=job_runner.executors.noop.NoopExecutor", "--NoopExecutor.duration_s=3600")


def _replicas(hub, postgres, deployment_path, tmp_path, db_name, secrets=None):
    url = postgres.create_db(db_name)
    a = replica(tmp_path, "a", url, deployment_path, NOOP, hub_api_url=hub["api"], port=hub["service_port"])
    b = replica(tmp_path, "b", url, deployment_path, NOOP, hub_api_url=hub["api"])
    for svc, secret in zip((a, b), secrets or ()):
        svc.env["AISTACK_COOKIE_SECRET"] = secret
    return a.start(), b.start()


def _hub_login(hub) -> requests.Session:
    s = requests.Session()
    hub_url = hub["proxy_url"] + "/"
    s.get(hub_url + "hub/login").raise_for_status()
    xsrf = s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf", path="/") or ""
    r = s.post(hub_url + "hub/login", data={"username": "root", "password": "x", "_xsrf": xsrf})
    assert s.cookies.get("jupyterhub-hub-login"), r.text[-500:]
    return s


def test_admin_login_started_on_one_replica_works_on_the_other(hub, postgres, deployment_path, tmp_path):
    """Closes: the admin page's cookie secret and OAuth state are shared across replicas (a login begun on
    B completes on A, and A's login cookie is accepted by B)."""
    a, b = _replicas(hub, postgres, deployment_path, tmp_path, "replicas_admin")
    try:
        s, hub_url = _hub_login(hub), hub["proxy_url"] + "/"
        # B starts the OAuth login: its redirect to the hub, with the state in a cookie signed by B.
        r = s.get(b.url + "admin/", allow_redirects=False)
        assert r.status_code == 302 and "oauth2/authorize" in r.headers["Location"], (r.status_code, r.text[:300])
        # The hub sends the browser back through the proxy, to A: A must accept B's state cookie.
        r = s.get(urljoin(hub_url, r.headers["Location"]), allow_redirects=True)
        assert r.status_code == 200 and r.url.startswith(hub_url + "services/aistack/admin"), (r.status_code, r.url,
                                                                                              r.text[-500:])
        assert 'id="viewer">root<' in r.text
        # A's login cookie, sent to B: B knows it (no new login).
        r = s.get(b.url + "admin/", allow_redirects=False)
        assert r.status_code == 200, (r.status_code, r.headers.get("Location"))
        assert 'id="viewer">root<' in r.text
    finally:
        a.stop()
        b.stop()


def test_replicas_with_different_cookie_secrets_do_not_share_a_login(hub, postgres, deployment_path, tmp_path):
    """Closes: the cookie secret is the configured one (the control: two replicas given different secrets
    refuse each other's login cookie, as every pair did when each process drew its own)."""
    a, b = _replicas(hub, postgres, deployment_path, tmp_path, "replicas_admin_apart", ("secret-one", "secret-two"))
    try:
        s, hub_url = _hub_login(hub), hub["proxy_url"] + "/"
        r = s.get(hub_url + "services/aistack/admin/")  # the whole login on A, through the proxy
        assert r.status_code == 200 and 'id="viewer">root<' in r.text, (r.status_code, r.url)
        r = s.get(b.url + "admin/", allow_redirects=False)
        assert r.status_code == 302 and "oauth2/authorize" in r.headers["Location"]  # B: not logged in
    finally:
        a.stop()
        b.stop()
