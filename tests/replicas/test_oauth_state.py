"""The admin page's OAuth state decoded by any replica (aistack_hub.admin.oauth), without a hub."""
from aistack_hub.admin.oauth import SharedStateHubOAuth


def test_a_login_state_made_by_one_replica_is_read_by_another():
    """Closes: OAuth state shared across replicas (another process's HubOAuth reads where to go back to)."""
    made = SharedStateHubOAuth(api_url="http://127.0.0.1:1/hub/api", api_token="x")
    other = SharedStateHubOAuth(api_url="http://127.0.0.1:1/hub/api", api_token="x")
    state = made.generate_state("/services/aistack/admin/?notice=hi", cookie_name=made.state_cookie_name + "-abc")
    assert other.get_next_url(state) == "/services/aistack/admin/?notice=hi"
    assert other.get_state_cookie_name(state) == made.state_cookie_name + "-abc"


def test_a_forged_state_redirects_nowhere_else():
    """Closes: OAuth state shared across replicas, without an open redirect (a state in a callback URL is
    read before its cookie check: only a path on this host, only a state cookie's name)."""
    auth = SharedStateHubOAuth(api_url="http://127.0.0.1:1/hub/api", api_token="x")
    for url in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert auth.get_next_url(auth.generate_state(url)) == auth.base_url
    forged = auth.generate_state("/ok", cookie_name="session")
    assert auth.get_state_cookie_name(forged) == auth.state_cookie_name
    for junk in ("", "nodot", "a.!!!", "a." + "e30"):  # e30 = {} (no next_url)
        assert auth.get_next_url(junk) == auth.base_url
