"""Lower bounds for the allocator benchmark (:mod:`job_runner.simulate`): how much GPU any placement
of a set of requests must leave unallocated on an inventory."""
from __future__ import annotations

import numpy as np

from .scheduling import Inventory


def share_floor_milli(shares) -> int:
    """GPU milli left over when the shares alone are packed offline, largest first, best fit (BFD):
    what any placement leaves unallocated as slivers on shared GPUs, near enough (BFD is within a few
    GPUs of optimal packing for these sizes)."""
    bins = np.zeros(1001, dtype=np.int64)  # GPUs opened so far, by free milli
    for s in sorted(shares, reverse=True):
        room = np.flatnonzero(bins[s:])
        if len(room):
            r = s + int(room[0])  # the tightest open GPU that fits
            bins[r] -= 1
        else:
            r = 1000  # open a fresh GPU
        bins[r - s] += 1
    return int((bins * np.arange(1001)).sum())


def _max_flow(cap: dict, source, sink, flow: dict) -> float:
    """Augment ``flow`` (edge -> amount, updated in place) to a maximum flow on the graph ``cap``
    (edge (u, v) -> capacity) by shortest augmenting paths; returns the flow added."""
    adj: dict = {}
    for (u, v) in cap:
        adj.setdefault(u, set()).add(v)
        adj.setdefault(v, set()).add(u)
    added = 0.0
    while True:
        prev, queue = {source: None}, [source]
        for u in queue:
            for v in adj.get(u, ()):
                room = cap.get((u, v), 0.0) - flow.get((u, v), 0.0) + flow.get((v, u), 0.0)
                if v not in prev and room > 1e-9:
                    prev[v] = u
                    queue.append(v)
        if sink not in prev:
            return added
        path, v = [], sink
        while prev[v] is not None:
            path.append((prev[v], v))
            v = prev[v]
        push = min(cap.get(e, 0.0) - flow.get(e, 0.0) + flow.get((e[1], e[0]), 0.0) for e in path)
        for u, v in path:
            back = min(push, flow.get((v, u), 0.0))  # cancel reverse flow first
            flow[(v, u)] = flow.get((v, u), 0.0) - back
            flow[(u, v)] = flow.get((u, v), 0.0) + push - back
        added += push


def allocation_floor_milli(inventory: Inventory, requests) -> dict:
    """A lower bound, near enough, on the GPU milli that any placement (online or offline) of
    ``requests`` leaves unallocated: capacity minus the most an offline, *fractional* placement
    could allocate when

    * each task may only use nodes of its allowed GPU models, and a k-GPU task only nodes with at
      least k GPUs (node groups: model x GPUs per node; capacity: their GPUs);
    * shares also spend the slivers they leave: the offline best-fit-decreasing packing of all the
      shares (:func:`share_floor_milli`) leaves S milli of slivers on the GPUs holding them, so every
      share milli placed costs 1 + S / (sum of shares) milli of capacity.

    Whole-GPU tasks are routed first (a milli of them allocates more than a milli of capacity spent on
    shares), then shares, by maximum flow. CPU and memory are left out (relaxing a constraint only
    lowers the bound). Returns the floor and its parts."""
    groups: dict = {}
    for node in inventory.nodes:
        gpus = [g for g in node.gpus if not g.mig_enabled]
        if gpus:
            key = (gpus[0].model, len(gpus))
            groups[key] = groups.get(key, 0) + 1000 * len(gpus)
    capacity = sum(groups.values())
    shares = [r.gpu_milli for r in requests if r.kind == "share"]
    sliver = share_floor_milli(shares) if shares else 0
    inflate = 1.0 + sliver / max(sum(shares), 1)
    demand: dict = {}
    for r in requests:
        if r.kind not in ("whole", "share"):
            continue
        k = r.gpus if r.kind == "whole" else 1
        ok = tuple(g for g in groups if g[1] >= k and (not r.gpu_models or g[0] in r.gpu_models))
        amount = 1000 * r.gpus if r.kind == "whole" else r.gpu_milli * inflate
        demand[(r.kind, ok)] = demand.get((r.kind, ok), 0.0) + amount
    cap = {(("grp", g), "T"): float(c) for g, c in groups.items()}
    flow: dict = {}
    placed = {}
    for kind in ("whole", "share"):
        for (kd, ok), amount in demand.items():
            if kd == kind:
                cap[("S", (kd, ok))] = amount
                for g in ok:
                    cap[((kd, ok), ("grp", g))] = float(capacity)
        # augmenting paths start at S and never revisit it: routing shares never lowers the whole flow
        placed[kind] = _max_flow(cap, "S", "T", flow)
    allocated = placed["whole"] + placed["share"] / inflate
    return {"floor_milli": max(0.0, capacity - allocated), "share_sliver_milli": sliver,
            "unplaceable_milli": sum(demand.values()) - placed["whole"] - placed["share"]}
