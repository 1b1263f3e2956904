"""Directory sign-in: LDAP (jupyterhub-ldapauthenticator) with directory groups mapped to tenants.

Configured in the one YAML file (docs/ldap.md)::

    JupyterHub: {authenticator_class: aistack_hub.ldap.AIStackLDAPAuthenticator}
    AIStackLDAPAuthenticator:
      server_address: ldap.example.org
      bind_dn_template: ["uid={username},ou=people,dc=example,dc=org"]
      tenant_groups:        {"cn=vision,ou=groups,dc=example,dc=org": vision}
      tenant_admin_groups:  {"cn=vision-leads,ou=groups,dc=example,dc=org": vision}

At each sign-in the user's directory groups decide their memberships of the mapped tenants (JupyterHub
groups) and their admin rights on them (the tenant's ``admins`` in the service's database). Only what the
directory gave is taken back: a membership or an admin right granted by hand (admin page, hub API) is left
alone, so the directory and the admin page can both be used. Where each came from is recorded in the
JupyterHub group's ``properties`` (:data:`LDAP_MEMBERS`, :data:`LDAP_ADMINS`: the users the directory
made members / admins); the admin page reads them to show "ldap" or "manual".

Why not ``manage_groups``: with it JupyterHub makes the authenticator the only source of group membership
and refuses the groups API, which the admin page uses to add members by hand.
"""
from __future__ import annotations

import json

from jupyterhub import orm
from ldapauthenticator import LDAPAuthenticator
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Dict, Unicode, observe

# Keys of a JupyterHub group's properties: the members / tenant admins that the directory made so.
LDAP_MEMBERS = "aistack_ldap_members"
LDAP_ADMINS = "aistack_ldap_admins"


class AIStackLDAPAuthenticator(LDAPAuthenticator):
    """LDAPAuthenticator whose directory groups make tenant members and tenant admins."""

    tenant_groups = Dict(
        key_trait=Unicode(), value_trait=Unicode(), config=True,
        help="""LDAP group DN -> tenant name: the group's members are members of the tenant (its JupyterHub
        group), added at sign-in and removed at the first sign-in after they left the LDAP group. The
        mapped groups are looked up with ``group_search_filter`` (added to ``allowed_groups``, so their
        members may sign in even when ``allow_all`` is false).""")
    tenant_admin_groups = Dict(
        key_trait=Unicode(), value_trait=Unicode(), config=True,
        help="""LDAP group DN -> tenant name: the group's members are admins of the tenant (and members of
        it), granted and taken back at sign-in like ``tenant_groups``.""")
    aistack_api_url = Unicode(
        "", config=True,
        help="The aistack service's API (set by aistack_hub.hubconfig): tenant admins are written there.")
    aistack_token = Unicode(
        "", config=True, help="The hub's token for the aistack service (set by aistack_hub.hubconfig).")

    @observe("tenant_groups", "tenant_admin_groups", "allowed_groups")
    def _look_up_mapped_groups(self, change):
        # LDAPAuthenticator looks up only the groups in allowed_groups (and names those found in
        # auth_state["ldap_groups"]): the mapped groups must be among them, whatever order the config
        # sets the traits in.
        mapped = set(self.tenant_groups or {}) | set(self.tenant_admin_groups or {})
        allowed = list(self.allowed_groups or [])
        missing = [dn for dn in sorted(mapped) if dn not in allowed]
        if missing:
            self.allowed_groups = allowed + missing

    def tenants_from_groups(self, ldap_groups) -> tuple[set[str], set[str]]:
        """(tenants the user is a member of, tenants they administer) by the directory."""
        groups = set(ldap_groups or ())
        admin_of = {t for dn, t in self.tenant_admin_groups.items() if dn in groups}
        member_of = {t for dn, t in self.tenant_groups.items() if dn in groups} | admin_of
        return member_of, admin_of

    async def run_post_auth_hook(self, handler, auth_model):
        auth_model = await super().run_post_auth_hook(handler, auth_model)
        if not auth_model:
            return auth_model
        name = auth_model["name"]
        member_of, admin_of = self.tenants_from_groups((auth_model.get("auth_state") or {}).get("ldap_groups"))
        mapped = set(self.tenant_groups.values()) | set(self.tenant_admin_groups.values())
        admin_changes = self.sync_memberships(handler, name, mapped, member_of, admin_of)
        for tenant, grant in sorted(admin_changes.items()):
            if await self.set_tenant_admin(tenant, name, grant):
                self.record_admin(handler, tenant, name, grant)
        return auth_model

    def sync_memberships(self, handler, name: str, mapped: set[str], member_of: set[str],
                         admin_of: set[str]) -> dict[str, bool]:
        """Make ``name``'s memberships of the ``mapped`` tenants follow the directory (taking back only what
        the directory gave) and record their source. Returns {tenant: grant admin?} for the admin rights
        to grant or take back (recorded once the service took them: :meth:`record_admin`)."""
        db = handler.db
        user = handler.user_from_username(name).orm_user  # created on a first sign-in
        admin_changes: dict[str, bool] = {}
        for tenant in sorted(mapped):
            group = orm.Group.find(db, tenant)
            if group is None:
                if tenant not in member_of:
                    continue
                group = orm.Group(name=tenant)  # a tenant whose group was never made (added on the admin page)
                db.add(group)
            props = dict(group.properties or {})
            members, admins = set(props.get(LDAP_MEMBERS) or ()), set(props.get(LDAP_ADMINS) or ())
            if tenant in member_of:
                if user not in group.users:
                    group.users.append(user)
                    members.add(name)
            elif name in members:
                if user in group.users:
                    group.users.remove(user)
                members.discard(name)
                self.log.info("%s left the directory group of tenant %s: membership removed", name, tenant)
            if (tenant in admin_of) != (name in admins):
                admin_changes[tenant] = tenant in admin_of
            props[LDAP_MEMBERS] = sorted(members)
            group.properties = props  # a new dict: the JSON column sees the change
        db.commit()
        return admin_changes

    def record_admin(self, handler, tenant: str, name: str, grant: bool) -> None:
        group = orm.Group.find(handler.db, tenant)
        if group is None:
            return
        props = dict(group.properties or {})
        admins = set(props.get(LDAP_ADMINS) or ())
        admins = admins | {name} if grant else admins - {name}
        props[LDAP_ADMINS] = sorted(admins)
        group.properties = props
        handler.db.commit()

    async def set_tenant_admin(self, tenant: str, name: str, grant: bool) -> bool:
        """Add ``name`` to (or remove them from) the tenant's admins in the service; whether it was done."""
        if not self.aistack_api_url:
            self.log.warning("tenant admins from the directory need AIStackLDAPAuthenticator.aistack_api_url")
            return False
        client = AsyncHTTPClient()
        url = f"{self.aistack_api_url.rstrip('/')}/tenants/{tenant}"
        headers = {"Authorization": f"token {self.aistack_token}", "Content-Type": "application/json"}
        try:
            r = await client.fetch(HTTPRequest(url, headers=headers, request_timeout=20))
            admins = list(json.loads(r.body).get("admins") or [])
            new = sorted(set(admins) | {name}) if grant else [a for a in admins if a != name]
            if set(new) != set(admins):
                await client.fetch(HTTPRequest(url, method="PATCH", headers=headers, request_timeout=20,
                                               body=json.dumps({"admins": new})))
            self.log.info("%s %s admin of tenant %s (directory group)", name, "made" if grant else "no longer",
                          tenant)
            return True
        except (HTTPClientError, OSError, ValueError) as e:
            # sign-in goes on: memberships are set; the admin right is tried again at the next sign-in
            self.log.error("could not %s %s as admin of tenant %s in the aistack service: %s",
                           "add" if grant else "remove", name, tenant, e)
            return False
