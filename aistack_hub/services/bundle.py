"""All service objects of the API, built once by ``aistack_hub.service`` over one ``ServiceContext``."""
from __future__ import annotations

from .accounting import AccountingService  # accounting (issue 15 A)
from .allocations import AllocationService
from .context import ServiceContext
from .jobs import JobService
from .pods import PodService
from .retention import RetentionService
from .tenants import TenantService


class Services:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.jobs = JobService(ctx)
        self.allocations = AllocationService(ctx)
        self.tenants = TenantService(ctx)
        self.pods = PodService(ctx)
        self.retention = RetentionService(ctx)
        # --- experiments (issue 13) ---
        from .experiments import ExperimentService
        self.experiments = ExperimentService(ctx, self.jobs, self.pods)
        self.accounting = AccountingService(ctx)  # accounting (issue 15 A)
