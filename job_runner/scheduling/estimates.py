"""Estimated start of the work still waiting after a pass.

Walk the running workloads' expected ends (earliest first) until the GPU they free covers everything
queued before a workload and itself, in the cluster and in its tenant's GPU quota; beyond the last known
end, queued work is assumed to run in waves of the default job duration. A workload that just found no
capacity waits at least for the next end. Time windows push the estimate to the next window opening.

The ledger keeps the ends sorted; the cumulative sums are built once per pass, and only when a workload
needs more than is free now (plain lists and bisect: one scalar lookup each, no array overhead).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from itertools import accumulate

from .ledger import Ledger
from .tenants import ANY, Tenant, next_window_start
from .workloads import Pending, Workload


class _Ends:
    """Expected ends (not before ``now``) and the GPU milli freed by then, cumulated."""

    def __init__(self, ends, now: float):
        self.times = [max(now, e[0]) for e in ends]
        self.freed = list(accumulate(e[1] for e in ends))

    def when(self, need: int, now: float, wave_milli: int, wave_s: float, all_in_waves: bool = False) -> float:
        """When ``need`` GPU milli will have been freed. If the known ends do not free that much, the rest
        (``all_in_waves``: all of ``need``, as for a tenant's quota) runs in waves of ``wave_milli`` after
        the last end."""
        if need <= 0:
            return now
        cum = self.freed
        if cum and cum[-1] >= need:
            return float(self.times[bisect_left(cum, need)])
        beyond = need if all_in_waves else need - (cum[-1] if cum else 0)
        last = self.times[-1] if cum else now
        return float(last + math.ceil(beyond / wave_milli) * wave_s)


def estimate(order: list[tuple[Workload, str]], now: float, ledger: Ledger,
             tenants: dict[str, Tenant]) -> list[Pending]:
    """``order``: the waiting workloads in admission order, each with the reason it waits."""
    if not order:
        return []
    ends = ledger.ends
    wave_s = ledger.default_job_s
    cap = max(ledger.capacity.gpu_milli, 1)
    free_now = ledger.capacity.gpu_milli - (sum(e[1] for e in ends))
    cluster: _Ends | None = None
    per_tenant: dict[str, _Ends] | None = None
    demand = 0
    tenant_demand: Counter = Counter()
    out = []
    for pos, (w, reason) in enumerate(order, 1):
        g = w.request.charge().gpu_milli
        demand += g
        if demand - free_now > 0 and cluster is None:
            cluster = _Ends(ends, now)
        est = cluster.when(demand - free_now, now, cap, wave_s) if cluster is not None else now
        t = tenants.get(w.tenant)
        q = t.quota(ANY) if t else None
        if q is not None and q.gpu_milli is not None:
            tenant_demand[w.tenant] += g
            over = ledger.tally(w.tenant).group(ANY).gpu_milli + tenant_demand[w.tenant] - q.gpu_milli
            if over > 0:
                if per_tenant is None:
                    grouped = defaultdict(list)
                    for e in ends:
                        grouped[e[2]].append(e)
                    per_tenant = {name: _Ends(sel, now) for name, sel in grouped.items()}
                mine = per_tenant.get(w.tenant) or _Ends((), now)
                est = max(est, mine.when(over, now, max(q.gpu_milli, 1), wave_s, all_in_waves=True))
        if reason == "capacity" and est <= now:
            # it did not fit just now: at least one running workload must end first
            first = max(now, ends[0][0]) if ends else now
            est = float(first) if first > now else now + wave_s
        if t is not None and t.windows:
            nxt = next_window_start(t.windows, est)
            est = nxt if nxt is not None else est
        out.append(Pending(w, pos, est, reason))
    return out
