"""Estimated start of the work still waiting after a pass, as a range, and honest when nothing tells.

Walk the running workloads' expected ends (earliest first) until the GPU they free covers everything
queued before a workload and itself, in the cluster and in its tenant's GPU quota; beyond the last end,
the queued work ahead is assumed to run in waves of its own expected durations. A workload that just found
no capacity waits at least for the next end. Time windows push the estimate to the next window opening.

Durations are what the workloads carry (:func:`duration_range`): the user's own ``expected_duration_s``
(taken as a range around it: people misjudge run times) or the history of similar runs
(``duration_spread_s``, from :func:`history_range`). A workload without either has an *unknown* end: no
default is made up for it. Each estimate is computed three times: with the shortest likely durations
(unknown ones may end at once: the earliest start), the expected ones and the longest likely ones (unknown
ones may never end). An estimate that depends on an unknown end has no expected start (None): the UI says
"unknown" instead of "starts in 9h 37m" from an assumed default.

The ends are sorted once per pass per scenario, and only when a workload needs more than is free now
(plain lists and bisect: one scalar lookup each, no array overhead).
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from itertools import accumulate

from .ledger import Ledger
from .tenants import ANY, Tenant, next_window_start
from .workloads import Pending, Workload

INF = math.inf
# A user's own run-time guess, as a range: jobs overrun more often (and by more) than they finish early.
USER_LOW, USER_HIGH = 0.75, 1.5
# With this many past runs the range is their interquartile range; with fewer, their extremes.
HISTORY_QUARTILES_FROM = 4
SCENARIOS = 3  # earliest, expected, latest


def _quantile(xs: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted ``xs``."""
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def history_range(durations) -> tuple[float, float, float] | None:
    """(shortest, typical, longest) likely run time from past run times in seconds: the median and the
    interquartile range (the extremes when there are fewer than 4 runs). None when there is no history."""
    xs = sorted(float(d) for d in durations if d is not None and d >= 0)
    if not xs:
        return None
    if len(xs) < HISTORY_QUARTILES_FROM:
        return xs[0], _quantile(xs, 0.5), xs[-1]
    return _quantile(xs, 0.25), _quantile(xs, 0.5), _quantile(xs, 0.75)


def duration_range(w: Workload) -> tuple[float, float, float] | None:
    """(shortest, expected, longest) run time of ``w``, or None when nothing tells."""
    d = w.expected_duration_s
    if d is None:
        return None
    if w.duration_spread_s is not None:
        lo, hi = w.duration_spread_s
        return min(lo, d), d, max(hi, d)
    return d * USER_LOW, d, d * USER_HIGH


def _rough(seconds: float) -> tuple[float, str]:
    m = seconds / 60
    if m < 55:
        step = 1 if m < 10 else 5 if m < 30 else 10
        return max(1, round(m / step) * step), "min"
    h = seconds / 3600
    if h < 23.5:
        step = 0.5 if h < 5 else 1
        return max(1, round(h / step) * step), "h"
    d = round(h / 24)
    return d, "day" if d == 1 else "days"


def _num(x: float) -> str:
    return f"{x:g}"


def describe_wait(low_s: float | None, high_s: float | None = None) -> str:
    """A wait in words, rounded as people say it: "about 10 min", "10–20 min", "within 5 min", or "unknown".
    The same rules as the lab extension's ``waitText`` (jobs.ts)."""
    if low_s is None:
        return "unknown"
    hi = max(low_s, high_s if high_s is not None else low_s)
    if hi < 60:
        return "within a minute"
    b, ub = _rough(hi)
    if low_s < 60:
        return f"within {_num(b)} {ub}"
    a, ua = _rough(low_s)
    if ua == ub:
        return f"about {_num(a)} {ua}" if a == b else f"{_num(a)}–{_num(b)} {ua}"
    return f"{_num(a)} {ua}–{_num(b)} {ub}"


class _Ends:
    """Expected ends (not before ``now``) and the GPU milli freed by then, cumulated."""

    def __init__(self, ends, now: float):
        ends = sorted(ends)
        self.times = [max(now, e[0]) for e in ends]
        self.freed = list(accumulate(e[1] for e in ends))

    def when(self, need: int, now: float, wave_milli: int, wave_s: float, all_in_waves: bool = False) -> float:
        """When ``need`` GPU milli will have been freed. If the known ends do not free that much, the rest
        (``all_in_waves``: all of ``need``, as for a tenant's quota) runs in waves of ``wave_milli`` after
        the last end, each ``wave_s`` long."""
        if need <= 0:
            return now
        cum = self.freed
        if cum and cum[-1] >= need:
            return float(self.times[bisect_left(cum, need)])
        beyond = need if all_in_waves else need - (cum[-1] if cum else 0)
        last = self.times[-1] if cum else now
        return float(last + math.ceil(beyond / wave_milli) * wave_s)

    def first_after(self, now: float) -> float | None:
        i = bisect_left(self.times, now + 1e-9)
        return self.times[i] if i < len(self.times) else None


class _Waves:
    """Wave lengths per scenario from the queued work ahead: the shortest low, the mean expected and the
    longest high duration; unknown work ahead makes the expected and the latest wave unbounded."""

    def __init__(self):
        self.low, self.sum, self.n, self.high, self.unknown = INF, 0.0, 0, 0.0, False
        self.lengths = (0.0, INF, INF)  # (earliest, expected, latest) wave length; kept up to date by add

    def add(self, r: tuple[float, float, float] | None) -> None:
        """Add a workload ahead, by its :func:`duration_range`."""
        if r is None:
            self.unknown, self.low = True, 0.0
        else:
            self.low = min(self.low, r[0])
            self.sum += r[1]
            self.n += 1
            self.high = max(self.high, r[2])
        if self.unknown or not self.n:
            self.lengths = (0.0 if self.low == INF else self.low), INF, INF
        else:
            self.lengths = self.low, self.sum / self.n, self.high


def _scenario_ends(ledger: Ledger, now: float) -> list[list[tuple[float, int, str]]]:
    """Per scenario, (end, GPU milli, tenant) of every running entry; unknown ends at ``now`` (earliest)
    and never (expected, latest)."""
    out: list[list[tuple[float, int, str]]] = [[], [], []]
    running = ledger.running
    for _, milli, tenant, wid in ledger.ends:
        r = running[wid]
        rng = duration_range(r.workload)
        for k in range(SCENARIOS):
            if rng is None:
                end = now if k == 0 else INF
            else:
                end = r.started_at + rng[k]
            out[k].append((end, milli, tenant))
    return out


def estimate(order: list[tuple[Workload, str]], now: float, ledger: Ledger,
             tenants: dict[str, Tenant]) -> list[Pending]:
    """``order``: the waiting workloads in admission order, each with the reason it waits."""
    if not order:
        return []
    cap = max(ledger.capacity.gpu_milli, 1)
    free_now = ledger.capacity.gpu_milli - (sum(e[1] for e in ledger.ends))
    scenario_ends: list | None = None
    cluster: list[_Ends] | None = None
    per_tenant: list[dict[str, _Ends]] | None = None
    demand = 0
    tenant_demand: Counter = Counter()
    ahead, tenant_ahead = _Waves(), defaultdict(_Waves)
    out = []
    for pos, (w, reason) in enumerate(order, 1):
        g = w.request.charge().gpu_milli
        demand += g
        waves = ahead.lengths
        if demand - free_now > 0 and cluster is None:
            scenario_ends = scenario_ends or _scenario_ends(ledger, now)
            cluster = [_Ends(e, now) for e in scenario_ends]
        est = [c.when(demand - free_now, now, cap, waves[k]) for k, c in enumerate(cluster)] \
            if cluster is not None else [now] * SCENARIOS
        t = tenants.get(w.tenant)
        q = t.quota(ANY) if t else None
        if q is not None and q.gpu_milli is not None:
            tenant_demand[w.tenant] += g
            over = ledger.tally(w.tenant).group(ANY).gpu_milli + tenant_demand[w.tenant] - q.gpu_milli
            if over > 0:
                if per_tenant is None:
                    scenario_ends = scenario_ends or _scenario_ends(ledger, now)
                    per_tenant = []
                    for ends in scenario_ends:
                        grouped = defaultdict(list)
                        for e in ends:
                            grouped[e[2]].append(e)
                        per_tenant.append({name: _Ends(sel, now) for name, sel in grouped.items()})
                mine_waves = tenant_ahead[w.tenant].lengths
                for k in range(SCENARIOS):
                    mine = per_tenant[k].get(w.tenant) or _Ends((), now)
                    est[k] = max(est[k], mine.when(over, now, max(q.gpu_milli, 1), mine_waves[k], all_in_waves=True))
        if reason == "capacity":
            # it did not fit just now: at least one running workload must end first (the earliest
            # scenario may say "now": an unknown end may come at any moment)
            if cluster is None:
                scenario_ends = scenario_ends or _scenario_ends(ledger, now)
                cluster = [_Ends(e, now) for e in scenario_ends]
            for k in range(1, SCENARIOS):
                if est[k] <= now:
                    first = cluster[k].first_after(now)
                    est[k] = first if first is not None else now + waves[k]
        if t is not None and t.windows:
            for k in range(SCENARIOS):
                if est[k] < INF:
                    nxt = next_window_start(t.windows, est[k])
                    est[k] = nxt if nxt is not None else est[k]
        rng = duration_range(w)
        ahead.add(rng)
        if q is not None and q.gpu_milli is not None:  # only quota'd tenants' waves are read
            tenant_ahead[w.tenant].add(rng)
        low, mid, high = est
        if mid == INF:  # depends on an end nothing tells: no made-up figure
            out.append(Pending(w, pos, None, reason, earliest_start=low, latest_start=None))
        else:
            out.append(Pending(w, pos, mid, reason, earliest_start=min(low, mid), latest_start=max(high, mid)))
    return out
