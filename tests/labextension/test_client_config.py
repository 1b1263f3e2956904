"""Where the server extension finds the aistack service (no hub needed: pure configuration logic)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from aistack_lab.client import AistackServiceClient, ServiceError


def test_service_url_from_env_gets_the_api_suffix(monkeypatch):
    monkeypatch.setenv("AISTACK_SERVICE_URL", "http://127.0.0.1:8890/services/aistack/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "tok")
    c = AistackServiceClient()
    assert c.base_url() == "http://127.0.0.1:8890/services/aistack/api/"
    assert c.api_token == "tok"
    assert AistackServiceClient(service_url="http://h/services/aistack/api").base_url() == "http://h/services/aistack/api/"


def test_without_a_configured_url_the_proxy_of_the_request_is_used(monkeypatch):
    monkeypatch.delenv("AISTACK_SERVICE_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/prefix/")
    c = AistackServiceClient()
    req = SimpleNamespace(protocol="https", host="hub.example.org")
    assert c.base_url(req) == "https://hub.example.org/prefix/services/aistack/api/"
    with pytest.raises(ServiceError) as e:
        c.base_url(None)
    assert e.value.status == 502 and "AISTACK_SERVICE_URL" in e.value.message
