"""Server limits say one thing, and say it before Start: ``GET profiles`` reports the tenant's per-user server
limit with what the user holds (the spawn form shows it), and a server over the limit is refused with the
same words the home page and the form use (real hub, real servers).
"""
from __future__ import annotations

from .conftest import user_token


def test_server_limit_before_start_and_one_message(hub):
    """Closes: server-limit messages contradict each other and the 3rd server is refused only after Start."""
    token = user_token(hub, "sam", ["team-a"])  # team-a: 1 server per user
    prof = hub.service("GET", "profiles", token, params={"tenant": "team-a"}).json()
    assert prof["server_limit"] == {"max_servers_per_user": 1, "servers": 0}, prof
    assert all(p["server_limit"] == prof["server_limit"] for p in prof["profiles"])
    r = hub.api("POST", "users/sam/servers/one", token, json={"tenant": "team-a", "profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready("sam", "one", token, timeout=120)
        prof = hub.service("GET", "profiles", token, params={"tenant": "team-a"}).json()
        assert prof["server_limit"] == {"max_servers_per_user": 1, "servers": 1}, prof
        r = hub.api("POST", "users/sam/servers/two", token, json={"tenant": "team-a", "profile": "cpu"})
        assert r.status_code in (403, 409), f"{r.status_code} {r.text}"
        message = r.json()["message"]
        assert "1 of the 1 server(s) tenant 'team-a' allows each user" in message, message
        assert "stop one" in message and "quota" not in message, message
    finally:
        hub.api("DELETE", "users/sam/servers/one", token)
