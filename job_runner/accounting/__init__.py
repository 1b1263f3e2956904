"""Accounting (issue 15 A, docs/accounting.md): usage intervals recorded as workloads hold their slices, a
versioned price book, reports per tenant/user for any period, tenant budgets with warnings and a hold.

- ``charge``: what a slice counts as (GPU-equivalents, cores, GiB, GPU model).
- ``recorder``: opens/closes intervals in the transaction of the state change; ``sync_all`` repairs after a
  crash from the event times (never double, never lost); the daily rollup as intervals close.
- ``prices``: the price book (versions with effective dates). ``report``: usage and cost for a period.
- ``budgets``: month-to-date spend against each tenant's budget, thresholds, the over-budget hold.
"""
from .charge import Charge, slice_charge  # noqa: F401
from .recorder import Accounting, add_idle, set_used_gpu_s  # noqa: F401
