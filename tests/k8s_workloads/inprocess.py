"""The aistack service's allocations, in-process, for the cluster tests and the Kubernetes benchmark.

``CoreAllocation`` answers like ``POST allocations`` (same shape, same scheduling core: quota verdict and
placement on the cluster's node names) without the HTTP hop; ``InProcessKubeGPUSpawner`` is the real
KubeGPUSpawner with its ``allocate``/``release`` calls going there instead of to the service.
"""
import itertools
import time

from job_runner.scheduling import Inventory, ProfileCatalog, Scheduler, Workload
from spawner.kube import KubeGPUSpawner
from spawner.allocation import AllocationRefused
from job_runner.binding.kube import SliceRenderer

PROFILES = [
    {"slug": "a100-2", "display_name": "2x A100", "request": {"kind": "whole", "gpus": 2, "gpu_models": ["A100-80GB"],
                                                              "cpu_milli": 2000, "memory_mib": 4096}},
    {"slug": "mig-1g", "display_name": "MIG 1g.10gb", "request": {"kind": "mig", "mig_profile": "1g.10gb",
                                                                  "gpu_models": ["A100-80GB"], "cpu_milli": 1000,
                                                                  "memory_mib": 2048}},
    {"slug": "t4-quarter", "display_name": "1/4 T4", "request": {"kind": "share", "gpu_milli": 250,
                                                                 "gpu_models": ["T4"], "cpu_milli": 1000,
                                                                 "memory_mib": 2048}},
    {"slug": "a30-half", "display_name": "1/2 A30 (HAMi)", "request": {"kind": "share", "gpu_milli": 500,
                                                                       "gpu_mem_mib": 12288, "gpu_models": ["A30"],
                                                                       "sharing": "hami", "cpu_milli": 1000,
                                                                       "memory_mib": 2048}},
    {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}},
]


class CoreAllocation:
    """In-process stand-in for the aistack service's allocations: the real scheduling core."""

    def __init__(self, nodes: list[dict], tenants: list, profiles: list[dict] = PROFILES):
        self.catalog = ProfileCatalog.from_config(profiles)
        self.scheduler = Scheduler(Inventory.from_config(SliceRenderer().inventory_config(nodes)), tenants)
        self.ids = itertools.count(1)

    def allocate(self, user: str, tenant: str, slug: str) -> dict:
        profile = self.catalog.get(slug)
        alloc_id = next(self.ids)
        w = Workload(f"alloc-{alloc_id}", tenant, user, "server", "normal", profile.request, time.time())
        verdict = self.scheduler.submit(w)
        if not verdict.ok:
            raise AllocationRefused(403, f"Cannot start a server with profile {slug!r}: {verdict.message}")
        for admitted, assignment in self.scheduler.schedule(time.time()).admitted:
            if admitted.id == w.id:
                a = assignment.to_dict()
                return {"id": alloc_id, "state": "allocated", "assignment": a,
                        "profile": {"slug": slug, "display_name": profile.display_name,
                                    "request": profile.request.to_dict(), "image": profile.image}}
        self.scheduler.cancel(w.id)
        raise AllocationRefused(409, f"no free capacity for {slug!r}")

    def release(self, alloc_id):
        self.scheduler.release(f"alloc-{alloc_id}")


class InProcessKubeGPUSpawner(KubeGPUSpawner):
    core: CoreAllocation = None
    tenant_records: dict = {}  # what the service's GET tenants/{name} would answer

    async def tenant_record(self, name):
        return self.tenant_records.get(name)

    async def allocate(self):
        tenant, slug = self._choose()
        self.tenant, self.profile_slug = tenant, slug
        self.allocation = self.core.allocate(self.user.name, tenant, slug)
        self.apply_profile_limits(self.allocation["profile"])
        return self.allocation

    async def release(self):
        if self.allocation:
            self.core.release(self.allocation["id"])
        self.allocation = None
