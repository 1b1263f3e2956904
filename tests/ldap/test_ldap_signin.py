"""Directory sign-in against a real OpenLDAP server (Debian's slapd, started by the fixture): people sign in
through the hub's login form (HTTP, with the form's XSRF token) and land in the tenants their directory
groups map to, as tenant admins where a group says so; leaving a group takes the membership back at the
next sign-in, and only what the directory gave.

Closes: Directory sign-in (AIStation's LDAP): LDAP sign-in with groups mapped to tenants (and tenant admins);
the admin page shows where a membership comes from (recorded in the group's properties).

Real parts: slapd + ldap-utils, jupyterhub-ldapauthenticator (ldap3) in the hub, ``aistack-hub up`` (JupyterHub,
configurable-http-proxy, the aistack service), the hub's REST API and the service's tenants API.
"""
from __future__ import annotations

import pytest

from aistack_hub.ldap import LDAP_ADMINS, LDAP_MEMBERS

from .conftest import PASSWORDS, dn, group_dn


def sign_in(hub, user, password=None):
    return hub.login(user, PASSWORDS[user] if password is None else password)


def hub_groups(hub, user) -> set[str]:
    r = hub.api("GET", f"users/{user}")
    assert r.status_code == 200, r.text
    return set(r.json()["groups"])


def group(hub, name) -> dict:
    r = hub.api("GET", f"groups/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def tenant_admins(hub, name) -> list[str]:
    r = hub.service("GET", f"tenants/{name}")
    assert r.status_code == 200, r.text
    return r.json()["admins"]


def test_sign_in_lands_in_the_mapped_tenant_as_its_admin(hub):
    """Closes: LDAP sign-in with directory groups mapped to tenants and to tenant admins."""
    s = sign_in(hub, "ana")
    assert s is not None, hub.log_tail()
    # the hub's session is a real one: the user's own page answers
    assert s.get(hub.url + "hub/home").status_code == 200
    assert hub_groups(hub, "ana") == {"vision"}  # vision (member and lead); nlp is not hers
    assert "ana" in tenant_admins(hub, "vision") and "ana" not in tenant_admins(hub, "nlp")
    props = group(hub, "vision")["properties"]
    assert "ana" in props[LDAP_MEMBERS] and props[LDAP_ADMINS] == ["ana"]  # where it came from: ldap

    assert sign_in(hub, "ben") is not None
    assert hub_groups(hub, "ben") == {"nlp"}
    assert "ben" not in tenant_admins(hub, "nlp")


def test_a_wrong_password_is_refused(hub):
    """Closes: LDAP sign-in (a bind with a wrong password must not sign anyone in)."""
    assert sign_in(hub, "ana", "not-her-password") is None
    assert sign_in(hub, "nobody", "whatever-pw") is None
    r = hub.api("GET", "users/nobody")
    assert r.status_code == 404  # nobody was created by a failed sign-in


def test_a_directory_account_in_no_allowed_or_mapped_group_is_refused(hub):
    """Closes: LDAP sign-in with groups (allow_all false: only the allowed and the mapped groups get in)."""
    assert sign_in(hub, "dan") is None
    assert hub.api("GET", "users/dan").status_code == 404


def test_leaving_the_directory_group_removes_the_membership_at_next_sign_in(hub, slapd):
    """Closes: groups mapped to tenants (removal follows the directory at the next sign-in)."""
    assert sign_in(hub, "cho") is not None
    assert hub_groups(hub, "cho") == {"vision"}
    assert "cho" not in tenant_admins(hub, "vision")
    # a membership given by hand (admin page / hub API) is not the directory's to take back
    r = hub.api("POST", "groups/nlp/users", json={"users": ["cho"]})
    assert r.status_code == 200, r.text
    slapd.modify(f"dn: {group_dn('vision')}\nchangetype: modify\ndelete: member\nmember: {dn('cho')}\n")
    assert hub_groups(hub, "cho") == {"vision", "nlp"}  # nothing changes before she signs in again
    assert sign_in(hub, "cho") is not None
    assert hub_groups(hub, "cho") == {"nlp"}
    props = group(hub, "nlp")["properties"]
    assert "cho" not in props.get(LDAP_MEMBERS, [])  # nlp: manual
    assert "cho" not in group(hub, "vision")["properties"][LDAP_MEMBERS]


def test_leaving_the_admin_group_takes_back_the_admin_right(hub, slapd):
    """Closes: directory groups mapped to tenant admins (taken back with the group)."""
    assert sign_in(hub, "ana") is not None
    assert "ana" in tenant_admins(hub, "vision")
    # an admin named by hand stays one
    r = hub.service("PATCH", "tenants/vision", json={"admins": sorted(set(tenant_admins(hub, "vision")) | {"ben"})})
    assert r.status_code == 200, r.text
    slapd.modify(f"dn: {group_dn('vision-leads')}\nchangetype: modify\nreplace: member\nmember: {dn('ben')}\n")
    assert sign_in(hub, "ana") is not None
    assert "ana" not in tenant_admins(hub, "vision") and "ben" in tenant_admins(hub, "vision")
    assert hub_groups(hub, "ana") == {"vision"}  # still a member: she is in the vision group
    assert group(hub, "vision")["properties"][LDAP_ADMINS] == []


@pytest.mark.parametrize("user", ["ana"])
def test_directory_password_change_is_what_counts(hub, slapd, user):
    """Closes: LDAP sign-in (the directory, not a copy in the hub, checks the password)."""
    slapd.modify(f"dn: {dn(user)}\nchangetype: modify\nreplace: userPassword\nuserPassword: new-{user}-pw\n")
    assert sign_in(hub, user) is None
    assert sign_in(hub, user, f"new-{user}-pw") is not None
    slapd.modify(f"dn: {dn(user)}\nchangetype: modify\nreplace: userPassword\nuserPassword: {PASSWORDS[user]}\n")
