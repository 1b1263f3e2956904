"""Tenant storage (issue 15 C): usage against quota per tenant, quotas, datasets and their publication, and
the mounts of a workload (the local spawner asks over HTTP, the local executor through ``mounts_sync``;
Kubernetes pods through ``pod_volumes``). docs/storage.md.

Who sees what: members their tenants' usage; tenant admins the same; platform admins everything and alone
change quotas and datasets. ``GET storage/mounts`` is for the hub (its service token) and admins.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
from typing import Annotated

from pydantic import Field

from job_runner.binding.storage import Mounts, StorageError, TenantStorage, UsageCache, check_name, quota_support
from job_runner.binding.storage_kube import KubeStorage, pod_volumes, tenant_claim
from job_runner.db import utcnow
from job_runner.db.resources import Dataset, DatasetGrant, TenantStorageRow

from .context import Identity, ServiceContext
from .errors import Forbidden, Invalid, NotFound
from .models import _Body, _Query

GIB = 1 << 30
WARN_AT = 0.9  # share of the quota from which usage is shown as a warning
MAX_PAGE = 500
# offsets past this are refused: the datasets page is an SQL OFFSET, and one beyond SQLite's 64-bit integer
# was a 500 (OverflowError) that the fuzz test found
MAX_OFFSET = 10 ** 9
log = logging.getLogger(__name__)


class StorageQuery(_Query):
    tenant: str | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0
    fresh: bool = False


class MountsQuery(_Query):
    tenant: str
    user: str


class QuotaBody(_Body):
    quota_gib: Annotated[float, Field(ge=0, le=1 << 20, allow_inf_nan=False)] | None = None


class DatasetBody(_Body):
    description: Annotated[str, Field(max_length=2000)] = ""
    size_gib: Annotated[float, Field(gt=0, le=1 << 20, allow_inf_nan=False)] = 1.0
    volume_name: Annotated[str, Field(max_length=253)] = ""
    tenants: Annotated[list[Annotated[str, Field(min_length=1, max_length=63)]], Field(max_length=1000)] = []


def _name(name: str, what: str) -> str:
    try:
        return check_name(name, what)
    except StorageError as e:
        raise Invalid(str(e), "bad_name") from None


class StorageService:
    def __init__(self, ctx: ServiceContext, storage: TenantStorage, kube: KubeStorage | None = None,
                 isolation=None):
        self.ctx = ctx
        self.storage = storage
        self.kube = kube or KubeStorage()
        self.isolation = isolation  # job_runner.binding.accounts.Isolation: the members' account names
        self.cache = UsageCache(storage.usage_cache_s, storage.scan_max_entries)
        self._support: str | None = None
        self._scan: asyncio.Future | None = None  # Kubernetes: the claims' scan in progress

    # ------------------------------------------------------------------ reads
    def _visible_tenants(self, ident: Identity) -> list[str]:
        names = sorted(t.name for t in self.ctx.tenants())
        if ident.is_admin:
            return names
        mine = set(ident.groups) | self.ctx.admin_tenants(ident)
        return [n for n in names if n in mine]

    def _quota_gib(self, tenant: str) -> float:
        with self.ctx.db.read() as s:
            row = s.get(TenantStorageRow, tenant)
            quota = None if row is None else row.quota_gib
        return float(self.storage.default_quota_gib if quota is None else quota)

    def _granted(self, tenant: str) -> list[str]:
        with self.ctx.db.read() as s:
            return sorted(g.dataset for g in s.query(DatasetGrant).filter(DatasetGrant.tenant == tenant))

    @property
    def on_claims(self) -> bool:
        """Tenants' storage is their Kubernetes claims (mount_claims, and an executor that can scan them)."""
        return self.kube.mount_claims and hasattr(self.ctx.executor, "tenant_namespace")

    def _claim_usage(self, tenant: str) -> dict:
        with self.ctx.db.read() as s:
            row = s.get(TenantStorageRow, tenant)
            got = None if row is None else (row.claim_used_bytes, row.claim_files, row.claim_partial,
                                            row.claim_measured_at, row.claim_message)
        used, files, partial, at, message = got or (None, None, None, None, None)
        if at is None:
            return {"bytes": 0, "files": 0, "partial": False, "measured_at": None, "scan_s": None,
                    "message": message or "not measured yet"}
        return {"bytes": int(used or 0), "files": int(files or 0), "partial": bool(partial), "scan_s": None,
                "message": message, "measured_at": at.replace(tzinfo=_dt.timezone.utc).timestamp()}

    def usage_of(self, tenant: str, fresh: bool = False) -> dict:
        """Blocking: the tenant's measured usage against its quota (on Kubernetes: its claim's last scan)."""
        path = self.storage.tenant_dir(tenant)
        if self.on_claims:
            got = self._claim_usage(tenant)
            claim = {"claim": tenant_claim(tenant), "namespace": self._namespace(tenant),
                     "message": got.pop("message")}
        else:
            got, claim = self.cache.get(path, fresh=fresh), {}
        quota = self._quota_gib(tenant)
        used = got["bytes"]
        share = used / (quota * GIB) if quota else 0.0
        if self._support is None and not self.on_claims:
            self._support = quota_support(os.path.dirname(path) if not os.path.isdir(path) else path)
        return {"tenant": tenant, "used_bytes": used, "files": got["files"], "partial": got["partial"],
                "measured_at": got["measured_at"], "scan_s": got["scan_s"], "quota_gib": quota,
                "quota_bytes": int(quota * GIB), "used_share": round(share, 4),
                "warning": bool(quota) and share >= WARN_AT, "over_quota": bool(quota) and share >= 1.0,
                "mount_path": self.storage.inside(tenant), "path": None if self.on_claims else path,
                "datasets": self._granted(tenant), "enforcement": self.enforcement(), **claim}

    # ------------------------------------------------------------------ Kubernetes: claims' usage
    def _namespace(self, tenant: str) -> str:
        rec = next((t for t in self.ctx.tenants() if t.name == tenant), None)
        return self.ctx.executor.tenant_namespace(tenant, getattr(rec, "namespace", None))

    def _record_scan(self, tenant: str, got: dict | None, message: str | None) -> None:
        with self.ctx.db.session() as s:
            row = s.get(TenantStorageRow, tenant)
            if row is None:
                row = TenantStorageRow(tenant=tenant, quota_gib=None)
                s.add(row)
            row.claim_message = message
            if got is not None:
                row.claim_used_bytes, row.claim_files = int(got["bytes"]), int(got.get("files") or 0)
                row.claim_partial, row.claim_measured_at = bool(got.get("partial")), utcnow()

    async def scan_claims(self) -> dict:
        """Measure every tenant's claim now, one after the other (a scan Job each); returns tenant -> bytes
        or the reason it was not measured. A failed scan keeps the last measurement and says why."""
        from job_runner.executors.k8s_storage_scan import ScanError, scan_claim

        out = {}
        for tenant in sorted(t.name for t in self.ctx.tenants()):
            ns = self._namespace(tenant)
            try:
                got = await scan_claim(self.ctx.executor, tenant, ns, tenant_claim(tenant), self.kube.scan_timeout_s)
            except ScanError as e:
                await self.ctx.offload.io(self._record_scan, tenant, None, str(e))
                out[tenant] = str(e)
                continue
            await self.ctx.offload.io(self._record_scan, tenant, got, None)
            out[tenant] = got["bytes"]
        return out

    def scan_soon(self) -> None:
        """Start a scan of all claims unless one runs (GET storage?fresh=1 on Kubernetes: not waited for)."""
        if self._scan is None or self._scan.done():
            self._scan = asyncio.ensure_future(self._scan_logged())

    async def _scan_logged(self) -> None:
        try:
            got = await self.scan_claims()
            log.info("storage: claims measured: %s", got)
        except Exception:  # noqa: BLE001 - the next interval tries again
            log.exception("storage: measuring the claims failed")

    async def run_forever(self, stop: asyncio.Event, is_leader) -> None:
        """Every KubeStorage.scan_interval_s, on the leader: measure the claims (the first pass at once)."""
        if not self.on_claims or self.kube.scan_interval_s <= 0:
            return
        while not stop.is_set():
            if is_leader():
                self.scan_soon()
                await asyncio.shield(self._scan)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.kube.scan_interval_s)
            except asyncio.TimeoutError:
                pass

    def enforcement(self) -> str:
        if self.on_claims:
            base = "measured by a scan pod every %g s, not enforced (the claim's size is the provisioner's limit)" \
                % self.kube.scan_interval_s
            if self.storage.over_quota == "read-only":
                return base + "; over quota: warned only on Kubernetes"
            return base + "; over quota: warned only"
        base = self._support or "measured, not enforced"
        if self.storage.over_quota == "read-only":
            return base + "; over quota: mounted read-only into new servers and jobs"
        return base + "; over quota: warned only"

    def _overview(self, ident: Identity, q: StorageQuery) -> dict:
        names = self._visible_tenants(ident)
        if q.tenant is not None:
            if q.tenant not in names:
                raise NotFound(f"no tenant {q.tenant!r} you may see")
            names = [q.tenant]
        page = names[q.offset:q.offset + q.limit]
        items = [self.usage_of(n, fresh=q.fresh) for n in page]
        nxt = q.offset + q.limit if q.offset + q.limit < len(names) else None
        return {"items": items, "total": len(names), "next_offset": nxt, "root": self.storage.root,
                "over_quota_policy": self.storage.over_quota}

    async def overview(self, ident: Identity, q: StorageQuery) -> dict:
        if q.fresh and self.on_claims and ident.is_admin:
            # measured by scan pods (one per tenant's claim): started by platform admins only, not by any
            # member's refresh; the answer shows the last scan until this one ends
            self.scan_soon()
        return await self.ctx.offload.io(self._overview, ident, q)

    # ------------------------------------------------------------------ quotas (admins)
    def _set_quota(self, tenant: str, body: QuotaBody) -> dict:
        if tenant not in {t.name for t in self.ctx.tenants()}:
            raise NotFound(f"no tenant {tenant!r}")
        with self.ctx.db.session() as s:
            row = s.get(TenantStorageRow, tenant) or TenantStorageRow(tenant=tenant)
            row.quota_gib = body.quota_gib
            row.updated_at = utcnow()
            s.add(row)
        return self.usage_of(tenant)

    async def set_quota(self, ident: Identity, tenant: str, body: QuotaBody) -> dict:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._set_quota, tenant, body)

    # ------------------------------------------------------------------ datasets (admins)
    @staticmethod
    def _dataset_json(d: Dataset, tenants: list[str]) -> dict:
        return {"name": d.name, "description": d.description, "size_gib": d.size_gib,
                "volume_name": d.volume_name, "tenants": tenants, "created_at": d.created_at.isoformat() + "Z"}

    def _datasets(self, ident: Identity, q: StorageQuery) -> dict:
        visible = set(self._visible_tenants(ident))
        with self.ctx.db.read() as s:
            rows = s.query(Dataset).order_by(Dataset.name).offset(q.offset).limit(q.limit + 1).all()
            grants: dict[str, list] = {}
            for g in s.query(DatasetGrant).filter(DatasetGrant.dataset.in_([r.name for r in rows])):
                grants.setdefault(g.dataset, []).append(g.tenant)
            items = []
            for r in rows[:q.limit]:
                ts = sorted(grants.get(r.name, []))
                if ident.is_admin or visible & set(ts):
                    items.append(self._dataset_json(r, ts if ident.is_admin else sorted(visible & set(ts))))
        return {"items": items, "next_offset": q.offset + q.limit if len(rows) > q.limit else None}

    async def datasets(self, ident: Identity, q: StorageQuery) -> dict:
        return await self.ctx.offload.io(self._datasets, ident, q)

    def _put_dataset(self, name: str, body: DatasetBody) -> tuple[dict, bool]:
        _name(name, "dataset")
        known = {t.name for t in self.ctx.tenants()}
        unknown = sorted(set(body.tenants) - known)
        if unknown:
            raise Invalid(f"no tenant {', '.join(unknown)}", "unknown_tenant")
        with self.ctx.db.session() as s:
            row = s.get(Dataset, name)
            created = row is None
            row = row or Dataset(name=name, created_at=utcnow())
            row.description, row.size_gib, row.volume_name = body.description, body.size_gib, body.volume_name
            s.add(row)
            s.flush()
            s.query(DatasetGrant).filter(DatasetGrant.dataset == name).delete()
            for t in sorted(set(body.tenants)):
                s.add(DatasetGrant(dataset=name, tenant=t))
            s.flush()
            out = self._dataset_json(row, sorted(set(body.tenants)))
        self.storage.prepare_dataset(name)  # state written first, then the folder
        return out, created

    async def put_dataset(self, ident: Identity, name: str, body: DatasetBody) -> tuple[dict, bool]:
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._put_dataset, name, body)

    def _delete_dataset(self, name: str) -> None:
        with self.ctx.db.session() as s:
            row = s.get(Dataset, name)
            if row is None:
                raise NotFound(f"no dataset {name!r}")
            s.query(DatasetGrant).filter(DatasetGrant.dataset == name).delete()
            s.delete(row)
        # the files stay: an admin removes them (an unpublished dataset is in no sandbox any more)

    async def delete_dataset(self, ident: Identity, name: str) -> None:
        self.ctx.require_admin(ident)
        await self.ctx.offload.io(self._delete_dataset, name)

    # ------------------------------------------------------------------ mounts of a workload
    def mounts_sync(self, tenant: str, user: str, account: str | None = None, sandboxed: bool = True) -> dict:
        """Blocking: the folder prepared, the member's account in the tenant's group, and the binds
        (``job_runner.binding.storage.Mounts`` as a dict). The tenant must exist."""
        if tenant not in {t.name for t in self.ctx.tenants()}:
            raise NotFound(f"no tenant {tenant!r}")
        if account is None and self.isolation is not None and self.isolation.switches:
            account = self.isolation.account_name(user)
        try:
            self.storage.prepare(tenant)
            if account:
                self.storage.add_member(tenant, account)
            over = self.storage.over_quota == "read-only" and self.usage_of(tenant)["over_quota"]
            m: Mounts = self.storage.mounts(tenant, self._granted(tenant), read_only=over, sandboxed=sandboxed)
        except StorageError as e:
            raise Invalid(str(e), "storage") from None
        return m.to_dict()

    async def mounts(self, ident: Identity, q: MountsQuery) -> dict:
        if not ident.is_admin:
            raise Forbidden("only the hub and admins ask for a workload's mounts")
        return await self.ctx.offload.io(self.mounts_sync, q.tenant, q.user)

    def pod_volumes_sync(self, tenant: str) -> dict:
        """Blocking: the Kubernetes volumes and mounts of a pod of ``tenant`` (its claim, its datasets)."""
        # a claim's usage is not scanned from the service: its size request is its limit (the provisioner's)
        vols, mounts = pod_volumes(tenant, self._granted(tenant), self.storage.mount_path,
                                   self.storage.dataset_mount_path)
        return {"volumes": vols, "volumeMounts": mounts,
                "env": {"AISTACK_TENANT_DIR": self.storage.inside(tenant)}}

    async def volumes(self, ident: Identity, tenant: str) -> dict:
        if not ident.is_admin:
            raise Forbidden("only the hub and admins ask for a pod's volumes")
        if not self.kube.mount_claims:
            return {"volumes": [], "volumeMounts": [], "env": {}, "claims": []}  # KubeStorage.mount_claims is off
        if tenant not in {t.name for t in self.ctx.tenants()}:
            raise NotFound(f"no tenant {tenant!r}")
        return await self.ctx.offload.io(self.pod_volumes_with_claims, tenant)

    def pod_volumes_with_claims(self, tenant: str) -> dict:
        """``pod_volumes_sync`` and, as ``claims``, the manifests KubeGPUSpawner creates in the server's
        namespace before the pod (namespace left empty: the spawner sets its own)."""
        return {**self.pod_volumes_sync(tenant), "claims": self.claims_sync(tenant, "")}

    def claims_sync(self, tenant: str, namespace: str) -> list[dict]:
        """The claims a tenant's namespace needs: its own and one per dataset published to it."""
        out = [self.kube.tenant_pvc(tenant, namespace, self._quota_gib(tenant) or None)]
        with self.ctx.db.read() as s:
            for name in self._granted(tenant):
                d = s.get(Dataset, name)
                out.append(self.kube.dataset_pvc(name, namespace, d.size_gib, d.volume_name))
        return out


def install(app) -> None:
    """Wire storage and environments into the ``aistack`` service ``app`` (called from
    ``AIStackService.initialize``): the services, the executor's hooks, the kernelspecs, and the
    service's own ``JUPYTER_PATH`` (its kernel check sees the catalog's kernels)."""
    from job_runner.binding.accounts import Isolation

    from .environments import EnvironmentService

    storage = TenantStorage(parent=app)
    ctx = app.services.ctx
    app.services.storage = StorageService(ctx, storage, KubeStorage(parent=app), Isolation(parent=app))
    app.services.environments = envs = EnvironmentService(ctx, storage)
    ex = app.executor
    svc = app.services.storage

    def mounts(tenant, user, account=None, sandboxed=True):
        try:
            return svc.mounts_sync(tenant, user, account, sandboxed)
        except (Invalid, NotFound, OSError) as e:  # the job still runs, without the tenant's storage
            app.log.warning("storage: no tenant storage for %s/%s: %s", tenant, user, e)
            return {"rw": [], "ro": [], "env": {}}

    ex.storage_mounts = mounts  # LocalExecutor (a marked block in its start)
    if svc.kube.mount_claims:
        ex.storage_volumes = svc.pod_volumes_sync  # Kubernetes job manifests
        ex.storage_claims = svc.claims_sync  # created in the tenant's namespace before its Job (k8s_claims)
    ex.environment_image = envs.image_for
    app.services.jobs.environment_check = envs.refusal  # a job may name only its tenant's environments
    try:
        envs.sync()
    except (OSError, StorageError) as e:
        app.log.warning("environments: could not write the kernelspecs under %s: %s", storage.environments_dir, e)
    path = envs.all_kernels_path()
    current = os.environ.get("JUPYTER_PATH", "")
    if path not in current.split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join([path, current]) if current else path
