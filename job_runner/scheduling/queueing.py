"""The pending queue's order: who is tried next in a scheduling pass.

1. priority classes, highest first (emergency > high > normal);
2. within a class, weighted dominant-resource fair share between tenants: the tenant whose (largest
   share of cluster GPU/CPU/memory it holds) / weight is least goes next, re-evaluated after every
   admission, like DRF;
3. FIFO within a tenant (by ``submitted_at``, then id). A workload that cannot start does not block
   smaller ones behind it: the next one of its tenant is tried in turn.
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from .slices import Resources
from .tenants import Tenant
from .workloads import Workload


def dominant_share(held: Resources, capacity: Resources, tenant: Tenant | None) -> float:
    """The largest share of the pool's GPU, CPU or memory that ``held`` is, divided by the tenant's weight."""
    dominant = max(held.gpu_milli / max(capacity.gpu_milli, 1), held.cpu_milli / max(capacity.cpu_milli, 1),
                   held.memory_mib / max(capacity.memory_mib, 1))
    return dominant / (tenant.weight if tenant is not None else 1.0)


def admission_order(pending: Iterable[Workload], share: Callable[[str], float]) -> Iterator[Workload]:
    """Yield the pending workloads in the order above. ``share(tenant)`` is read again for a tenant
    after each of its workloads was tried, so admissions made meanwhile count."""
    by_class: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for w in sorted(pending, key=lambda w: (w.submitted_at, w.id)):
        by_class[w.rank][w.tenant].append(w)
    for rank in sorted(by_class, reverse=True):
        queues = by_class[rank]
        heap = [(share(t), t) for t in queues]
        heapq.heapify(heap)
        cursor = dict.fromkeys(queues, 0)
        while heap:
            _, t = heapq.heappop(heap)
            q = queues[t]
            w = q[cursor[t]]
            cursor[t] += 1
            yield w
            if cursor[t] < len(q):
                heapq.heappush(heap, (share(t), t))
