"""Tenant storage: usage against quota, quotas, datasets, a workload's mounts (docs/storage.md)."""
from __future__ import annotations

from aistack_hub.services.storage import DatasetBody, MountsQuery, QuotaBody, StorageQuery

from .base import APIHandler


class StorageHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.storage.overview(self.identity, self.query(StorageQuery)))


class TenantStorageHandler(APIHandler):
    async def get(self, tenant):
        q = StorageQuery(tenant=tenant, fresh=self.get_query_argument("fresh", "") in ("1", "true"))
        got = await self.services.storage.overview(self.identity, q)
        self.write_json(got["items"][0])

    async def put(self, tenant):
        self.write_json(await self.services.storage.set_quota(self.identity, tenant, await self.body(QuotaBody)))


class MountsHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.storage.mounts(self.identity, self.query(MountsQuery)))


class VolumesHandler(APIHandler):
    """The Kubernetes volumes of a pod of ``tenant`` (KubeGPUSpawner asks with the hub's token)."""

    async def get(self):
        tenant = self.get_query_argument("tenant", "")
        self.write_json(await self.services.storage.volumes(self.identity, tenant))


class DatasetsHandler(APIHandler):
    async def get(self):
        self.write_json(await self.services.storage.datasets(self.identity, self.query(StorageQuery)))


class DatasetHandler(APIHandler):
    async def put(self, name):
        out, created = await self.services.storage.put_dataset(self.identity, name, await self.body(DatasetBody))
        self.write_json(out, 201 if created else 200)

    async def delete(self, name):
        await self.services.storage.delete_dataset(self.identity, name)
        self.set_status(204)
        self.finish()
