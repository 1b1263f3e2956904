"""What the service methods share, and who may see what.

Who sees what: a user their own jobs; a tenant admin (in the tenant's ``admins``) their tenant's; a JupyterHub
admin, or a token with the ``admin:users`` scope, everything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from job_runner.db.tenants import load_tenant, load_tenants

from .errors import Forbidden, Invalid, NotFound
from .limits import Limits
from .offload import Offload


@dataclass(frozen=True)
class Identity:
    name: str
    kind: str = "user"  # user | service | hub
    admin: bool = False
    groups: frozenset = frozenset()
    scopes: frozenset = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.kind == "hub" or self.admin or "admin:users" in self.scopes


@dataclass
class ServiceContext:
    """Built by ``aistack_hub.service``; the service objects hold it."""

    db: object
    controller: object  # job_runner's scheduling loop: check, view, pending_info, wake, ...
    deployment: object
    executor: object
    offload: Offload
    max_body_bytes: int = 16 * 1024 * 1024
    notebook_root: str = ""  # template with {user}: where path submissions are read ('' = not allowed)
    validate_kernels: bool = True
    jobs_dir: str = ""
    run_files: object = None  # the run-file store pods write to and outputs are read from (AIStackService.run_files)
    job_token_secret: str = ""
    limits: Limits = field(default_factory=Limits)  # the API's limits (docs/limits.md)
    followers: dict = field(default_factory=dict)  # user -> log streams open now (Limits.max_log_followers_per_user)

    # ------------------------------------------------------------------ tenants (database reads)
    def tenant(self, name: str):
        return load_tenant(self.db, name)

    def tenants(self) -> list:
        return load_tenants(self.db)

    def admin_tenants(self, ident: Identity) -> set:
        """Tenants ``ident`` administers (all of them for an admin)."""
        return {t.name for t in self.tenants() if ident.is_admin or ident.name in t.admins}

    def may_see(self, ident: Identity, user: str, tenant: str) -> bool:
        if ident.is_admin or user == ident.name:
            return True
        t = self.tenant(tenant)
        return t is not None and ident.name in t.admins

    def visible_row(self, s, ident: Identity, model, raw_id: str, what: str):
        """The row of ``model`` (it has ``user`` and ``tenant``) that a path's id names, if ``ident`` may see it;
        else NotFound: the same answer for "no such row" and "not yours", so others' ids leak nothing."""
        from .models import row_id

        n = row_id(raw_id)
        row = s.get(model, n) if n else None
        if row is None or not self.may_see(ident, row.user, row.tenant):
            raise NotFound(f"no {what} {raw_id!r}")
        return row

    def require_admin(self, ident: Identity):
        if not ident.is_admin:
            raise Forbidden("only JupyterHub admins may do this")

    def pick_tenant(self, ident: Identity, requested: str | None) -> str:
        """The tenant a request of ``ident`` charges: the one named (a member's, or any for an admin), else
        the only tenant ``ident`` is a member of."""
        if requested is not None and not isinstance(requested, str):  # raw-dict callers (pipelines, schedules)
            raise Invalid("'tenant' must be a string: a tenant's name", "bad_tenant")
        tenants = {t.name for t in self.tenants()}
        if requested is not None:
            if requested not in tenants:
                raise Invalid(f"no tenant {requested!r}", "unknown_tenant")
            if not (ident.is_admin or requested in ident.groups):
                raise Forbidden(f"you are not a member of tenant {requested!r}")
            return requested
        mine = sorted(tenants & set(ident.groups))
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise Forbidden("you are in no tenant (JupyterHub group); ask an admin to add you", "no_tenant")
        raise Invalid(f"you are in several tenants ({', '.join(mine)}): say which in 'tenant'")

    def offered_profile(self, slug: str, tenant: str):
        """The profile ``slug`` if the tenant may use it."""
        try:
            profile = self.deployment.profiles.get(slug)
        except KeyError:
            raise Invalid(f"no profile {slug!r}", "unknown_profile") from None
        if not profile.offered_to(tenant):
            raise Forbidden(f"profile {slug!r} is not offered to tenant {tenant!r}")
        return profile
