"""Estimated start of the work still waiting after a pass.

Walk the running workloads' expected ends (earliest first) until the GPU they free covers everything
queued before a workload and itself, in the cluster and in its tenant's GPU quota; beyond the last known
end, queued work is assumed to run in waves of the default job duration. A workload that just found no
capacity waits at least for the next end. Time windows push the estimate to the next window opening.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from .ledger import Ledger
from .tenants import ANY, Tenant, next_window_start
from .workloads import Pending, Running, Workload


def expected_end(r: Running, default_job_s: float, default_server_s: float) -> float:
    d = r.workload.expected_duration_s
    if d is None:
        d = default_server_s if r.workload.kind == "server" else default_job_s
    return r.started_at + d


def estimate(order: list[tuple[Workload, str]], now: float, ledger: Ledger, tenants: dict[str, Tenant],
             default_job_s: float, default_server_s: float) -> list[Pending]:
    """``order``: the waiting workloads in admission order, each with the reason it waits."""
    if not order:
        return []
    ends = sorted((expected_end(r, default_job_s, default_server_s), r.charge.gpu_milli, r.workload.tenant)
                  for r in ledger.running.values())
    end_t = np.array([max(now, e[0]) for e in ends], dtype=np.float64)
    freed = np.cumsum([e[1] for e in ends]) if ends else np.zeros(0)
    capacity = ledger.capacity.gpu_milli
    free_now = capacity - sum(e[1] for e in ends)
    grouped: dict[str, list] = defaultdict(list)
    for e in ends:
        grouped[e[2]].append((max(now, e[0]), e[1]))
    per_tenant_ends = {name: (np.array([x[0] for x in sel]), np.cumsum([x[1] for x in sel]))
                       for name, sel in grouped.items()}
    demand = 0
    tenant_demand: Counter = Counter()
    out = []
    cap = max(capacity, 1)

    def when(need: int, times: np.ndarray, cum: np.ndarray) -> float:
        if need <= 0:
            return now
        if len(cum) and cum[-1] >= need:
            return float(times[np.searchsorted(cum, need)])
        beyond = need - (cum[-1] if len(cum) else 0)
        last = times[-1] if len(times) else now
        return float(last + math.ceil(beyond / cap) * default_job_s)

    for pos, (w, reason) in enumerate(order, 1):
        g = w.request.charge().gpu_milli
        demand += g
        est = when(demand - free_now, end_t, freed)
        t = tenants.get(w.tenant)
        q = t.quota(ANY) if t else None
        if q is not None and q.gpu_milli is not None:
            tenant_demand[w.tenant] += g
            over = ledger.tally(w.tenant).group(ANY).gpu_milli + tenant_demand[w.tenant] - q.gpu_milli
            times, cum = per_tenant_ends.get(w.tenant, (np.zeros(0), np.zeros(0)))
            if over > 0:
                if len(cum) and cum[-1] >= over:
                    est = max(est, float(times[np.searchsorted(cum, over)]))
                else:
                    est = max(est, (times[-1] if len(times) else now)
                              + math.ceil(over / max(q.gpu_milli, 1)) * default_job_s)
        if reason == "capacity" and est <= now:
            # it did not fit just now: at least one running workload must end first
            est = float(end_t[0]) if len(end_t) and end_t[0] > now else now + default_job_s
        if t is not None and t.windows:
            nxt = next_window_start(t.windows, est)
            est = nxt if nxt is not None else est
        out.append(Pending(w, pos, est, reason))
    return out
