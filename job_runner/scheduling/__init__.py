"""The scheduling core: GPU models and MIG rules, inventory, slice requests, profile catalog, tenants and
quotas, placement policies, admission and cluster state. Pure Python + numpy, no I/O.

Contract: docs/architecture.md "Scheduling core"; design and figures: docs/scheduling.md.
"""
from .assignment import Assignment
from .inventory import GPU, Inventory, Node
from .models import GPU_MODELS, GPUModel, MigProfile, MigSpec, gpu_model
from .policies import POLICIES, FGD, BestFit, FirstFit, PackedFGD, PlacementPolicy, TargetWorkload, make_policy
from .profiles import Profile, ProfileCatalog
from .scheduler import Scheduler
from .slices import Resources, SliceRequest
from .state import ClusterState, Placement
from .tenants import ANY, Quota, Tenant, TimeWindow
from .workloads import PRIORITIES, Decision, Pending, Running, TenantUsage, Verdict, Workload

__all__ = [
    "ANY", "Assignment", "BestFit", "ClusterState", "Decision", "FGD", "FirstFit", "GPU", "GPUModel",
    "GPU_MODELS", "Inventory", "MigProfile", "MigSpec", "Node", "POLICIES", "PRIORITIES", "PackedFGD",
    "Pending", "Placement", "PlacementPolicy", "Profile", "ProfileCatalog", "Quota", "Resources", "Running",
    "Scheduler", "SliceRequest", "TargetWorkload", "Tenant", "TenantUsage", "TimeWindow", "Verdict",
    "Workload", "gpu_model", "make_policy",
]
