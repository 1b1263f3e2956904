"""Preemption: which running jobs give way. Two cases, as in Kueue:

- **reclaim** (:func:`reclaim`): a tenant asks for quota it lent to its cohort; borrowed jobs of the other
  members give it back, youngest first, until the cohort fits the sum of its members' quotas again;
- **priority** (:func:`preempt_for`, with ``preemption=True``): an emergency workload that fits nowhere
  displaces lower-priority jobs on one node, lowest priority and youngest first, as few as needed.

Servers are never preempted. These functions choose victims and never change anything: the caller stops
them in the ledger (and reports them in ``Decision.preempt``).
"""
from __future__ import annotations

import numpy as np

from .ledger import Ledger
from .policies import FirstFit, PlacementPolicy
from .quota import Quotas
from .slices import Resources, SliceRequest
from .state import ClusterState, Placement
from .tenants import Tenant
from .workloads import Running, Workload


def reclaim(quotas: Quotas, tenant: Tenant, charge: Resources) -> list[Running] | None:
    """Borrowed jobs of ``tenant``'s cohort partners whose removal lets ``charge`` fit the cohort's
    quota sum; None if even all of them would not do."""
    nominal, used = quotas.cohort_gpu(tenant)
    need = used + charge.gpu_milli - nominal
    names = {m.name for m in quotas.members(tenant) if m.name != tenant.name}
    victims = sorted((r for r in quotas.ledger.running.values() if r.borrowed and r.workload.tenant in names),
                     key=lambda r: (-r.started_at, r.workload.id))
    chosen = []
    for r in victims:
        if need <= 0:
            break
        chosen.append(r)
        need -= r.charge.gpu_milli
    return chosen if need <= 0 else None


def preempt_for(ledger: Ledger, w: Workload, req: SliceRequest, policy: PlacementPolicy):
    """(lower-priority jobs on one node whose removal lets ``req`` fit, the placement there), or None."""
    victims = sorted((r for r in ledger.running.values() if r.workload.kind == "job" and r.workload.rank < w.rank),
                     key=lambda r: (r.workload.rank, -r.started_at, r.workload.id))
    if not victims:
        return None
    trial = ledger.state.copy()
    released = []
    placement = None
    for r in victims:
        trial.free(r.workload.request, r.assignment)
        released.append(r)
        # first-fit on the trial copy: fragmentation caches belong to the live state
        placement = FirstFit().place(trial, req)
        if placement is not None:
            break
    if placement is None:
        return None
    # keep only the victims on the chosen node, in order, until it fits
    row = placement.node
    node = ledger.inventory.nodes[row].name
    needed = []
    trial = ledger.state.copy()
    for r in released:
        if r.assignment.node != node:
            continue
        trial.free(r.workload.request, r.assignment)
        needed.append(r)
        placement = place_on(trial, req, row, policy)
        if placement is not None:
            break
    if placement is None:
        return None
    return needed, placement


def place_on(state: ClusterState, req: SliceRequest, node: int, policy: PlacementPolicy) -> Placement | None:
    """Place ``req`` on one given node (used to confirm a preemption)."""
    node_ok, gpu_ok = state.feasible(req)
    if not node_ok[node]:
        return None
    only = np.zeros_like(node_ok)
    only[node] = True
    if req.kind == "mig":
        return policy.place_mig(state, req, np.array([node]))
    return FirstFit().choose(state, req, only, gpu_ok)
