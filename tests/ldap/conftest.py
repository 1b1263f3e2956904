"""Fixtures of the directory sign-in tests: a real slapd (tests/ldap/slapd.py) with people and groups,
and a real AIStack Hub (``aistack-hub up``) signing in against it."""
from __future__ import annotations

import shutil
import tempfile

import pytest

from tests.hub.launcher import running_hub

from .slapd import SUFFIX, Slapd, missing_tools

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PASSWORDS = {"ana": "ana-directory-pw", "ben": "ben-directory-pw", "cho": "cho-directory-pw",
             "dan": "dan-directory-pw"}


def dn(user: str) -> str:
    return f"uid={user},{PEOPLE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def directory_ldif() -> str:
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
               f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
               f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups"]
    for user, pw in PASSWORDS.items():
        entries.append(f"dn: {dn(user)}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\n"
                       f"userPassword: {pw}")
    # staff: may sign in (allowed_groups) without a tenant; dan is in no group at all
    members = {"vision": ["ana", "cho"], "vision-leads": ["ana"], "nlp": ["ben"], "staff": ["cho"]}
    for name, users in members.items():
        entries.append(f"dn: {group_dn(name)}\nobjectClass: groupOfNames\ncn: {name}\n"
                       + "\n".join(f"member: {dn(u)}" for u in users))
    return "\n\n".join(entries) + "\n"


@pytest.fixture(scope="module")
def slapd():
    missing = missing_tools()
    if missing:
        pytest.fail(f"{missing} missing: install the Debian packages slapd and ldap-utils "
                    f"(scripts/setup.d/35-ldap.sh)", pytrace=False)
    tmp = tempfile.mkdtemp(prefix="aistack-slapd-")
    server = Slapd(tmp)
    try:
        server.start()
        server.add(directory_ldif())
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def hub_config(server: Slapd) -> dict:
    return {
        "JupyterHub": {"authenticator_class": "aistack_hub.ldap.AIStackLDAPAuthenticator"},
        "Authenticator": {"admin_users": ["admin"], "allow_all": False},
        "AIStackLDAPAuthenticator": {
            "server_address": "127.0.0.1",
            "server_port": server.port,
            "tls_strategy": "insecure",  # the test server has no certificate; see docs/ldap.md for TLS
            "bind_dn_template": [f"uid={{username}},{PEOPLE}"],
            "allowed_groups": [group_dn("staff")],  # the mapped groups are added to these
            "tenant_groups": {group_dn("vision"): "vision", group_dn("nlp"): "nlp"},
            "tenant_admin_groups": {group_dn("vision-leads"): "vision"},
        },
        "tenants": [{"name": "vision", "quotas": {}}, {"name": "nlp", "quotas": {}}],
        "profiles": [{"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 500,
                                                                        "memory_mib": 512}}],
        "inventory": [{"name": "node", "cpu_milli": 8000, "memory_mib": 16384, "gpus": 0}],
    }


@pytest.fixture(scope="module")
def hub(slapd):
    with running_hub(hub_config(slapd), "aistack-ldap-hub-", "ldap") as h:
        yield h
