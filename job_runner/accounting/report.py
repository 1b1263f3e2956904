"""Usage and cost reports for any period, grouped by tenant / user / day / GPU model / kind.

Whole UTC days come from the daily rollup (closed intervals); the partial days at the period's edges and
every open interval come from the raw intervals, cut with the same ``day_parts`` (job_runner.accounting.rollup).
Each day's part is priced with the price book version in force that day. ``jobs``/``servers`` count the job
attempts / server allocations whose interval started in the period.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import and_, case, func, or_, select

from job_runner.db.accounting import UsageBlock, UsageDaily, UsageDailyTenant, UsageInterval

from .prices import PriceBook, day_date
from .rollup import BLOCK_DAYS, DAY, SUMS, interval_parts

GROUPS = ("tenant", "user", "day", "gpu_model", "kind")
FIGURES = ("gpu_hours", "charged_gpu_hours", "cpu_core_hours", "memory_gib_hours", "idle_gpu_hours",
           "held_hours", "jobs", "servers", "gpu_cost", "cpu_cost", "memory_cost", "cost")


_N = len(SUMS)  # a row: SUMS..., jobs, servers, gpu_cost, cpu_cost, memory_cost
_JOBS, _SERVERS, _GC, _CC, _MC = _N, _N + 1, _N + 2, _N + 3, _N + 4


class _Acc:
    """Rows of the report by group key, as flat lists (a by-day report of every user adds ~50-150k rollup rows
    through ``add_rollup``: the hot loop). Each part is priced with the prices of its day."""

    def __init__(self, group_by, book: PriceBook):
        self.group_by, self.book, self.rows = tuple(group_by), book, {}
        self._prices: dict = {}

    def prices(self, day: int, model: str) -> tuple:
        p = self._prices.get((day, model))
        if p is None:
            b = self.book
            p = self._prices[(day, model)] = (b.price("gpu", model, day), b.price("cpu", "", day),
                                              b.price("memory", "", day))
        return p

    def add(self, day, tenant, user, model, kind, sums: dict, runs: int = 0):
        vals = {"tenant": tenant, "user": user, "day": day, "gpu_model": model, "kind": kind}
        self._add(tuple(vals[g] for g in self.group_by), day, model, kind == "job",
                  [sums.get(k, 0.0) for k in SUMS], runs)

    def _add(self, key, day, model, is_job, sums, runs):
        r = self.rows.get(key)
        if r is None:
            r = self.rows[key] = [0.0] * _N + [0, 0, 0.0, 0.0, 0.0]
        for i in range(_N):
            r[i] += sums[i]
        r[_JOBS if is_job else _SERVERS] += runs
        pg, pc, pm = self.prices(day, model)
        charged, cpu, mem = sums[1], sums[2], sums[3]
        # the same arithmetic as PriceBook.cost: (seconds / 3600) x price per hour
        if charged:
            r[_GC] += charged / 3600.0 * pg
        if cpu:
            r[_CC] += cpu / 3600.0 * pc
        if mem:
            r[_MC] += mem / 3600.0 * pm

    def add_rollup(self, rows, n_keys: int, key_at: list[int], prices: tuple) -> None:
        """Rows of a rollup query (``_whole_days``): ``n_keys`` group columns (``group_by``'s at ``key_at``), SUMS,
        jobs, servers, and the GPU-seconds x price per hour already summed per row in SQL; ``prices``: the (gpu
        default, cpu, memory) prices of the run of days they cover. Inlined: a by-day report of every user passes
        ~150k rows through here."""
        acc_rows, get = self.rows, self.rows.get
        _, pc, pm = prices
        direct = key_at == list(range(n_keys))
        for row in rows:
            gpu, charged, cpu, mem, idle, held, jobs, servers, gpu_price_s = row[n_keys:]
            if held is None:  # SUM over no rows (a report without a grouping)
                continue
            key = tuple(row[:n_keys]) if direct else tuple([row[i] for i in key_at])
            # the same arithmetic as PriceBook.cost: (seconds / 3600) x price per hour
            gc = gpu_price_s / 3600.0 if gpu_price_s else 0.0
            cc = cpu / 3600.0 * pc if cpu else 0.0
            mc = mem / 3600.0 * pm if mem else 0.0
            r = get(key)
            if r is None:  # most keys of a by-day report: one row each (0.0 + x is x: the same sums)
                acc_rows[key] = [gpu, charged, cpu, mem, idle, held, int(jobs or 0), int(servers or 0), gc, cc, mc]
                continue
            r[0] += gpu
            r[1] += charged
            r[2] += cpu
            r[3] += mem
            r[4] += idle
            r[5] += held
            r[_JOBS] += int(jobs or 0)
            r[_SERVERS] += int(servers or 0)
            r[_GC] += gc
            r[_CC] += cc
            r[_MC] += mc

    def result(self) -> list[dict]:
        out = []
        cur, group_by = self.book.currency, self.group_by
        has_day, has_model = "day" in group_by, "gpu_model" in group_by
        iso: dict = {}
        try:  # group values are never None today; the fallback keeps a missing one (NULL) sortable
            keys = sorted(self.rows)
        except TypeError:
            keys = sorted(self.rows, key=lambda k: tuple("" if x is None else x for x in k))
        rows = self.rows
        names = group_by + FIGURES + ("currency",)
        i_day = group_by.index("day") if has_day else None
        i_model = group_by.index("gpu_model") if has_model else None
        for key in keys:
            r = rows[key]
            if has_day or has_model:
                key = list(key)
                if has_day:
                    d = key[i_day]
                    key[i_day] = iso.get(d) or iso.setdefault(d, day_date(d).isoformat())
                if has_model:
                    key[i_model] = key[i_model] or None
                key = tuple(key)
            # one dict from one tuple (a by-day report of every user builds ~50-150k of these)
            out.append(dict(zip(names, key + (r[0] / 3600, r[1] / 3600, r[2] / 3600, r[3] / 3600, r[4] / 3600,
                                              r[5] / 3600, r[_JOBS], r[_SERVERS], r[_GC], r[_CC], r[_MC],
                                              r[_GC] + r[_CC] + r[_MC], cur))))
        return out


def _filters(model, tenants, users):
    f = []
    if tenants is not None:
        f.append(model.tenant.in_(sorted(tenants)))
    if users is not None:
        f.append(model.user.in_(sorted(users)))
    return f


def _raw(s, acc: _Acc, a: float, b: float, flt, by_user: bool) -> None:
    """Closed intervals overlapping [a, b) — a part of one UTC day — clipped to it and summed in SQL (the
    same arithmetic as ``day_parts``). Two index range scans: short intervals (<= 1 day) start at most a day
    before ``a`` (``+ 0`` keeps SQLite off the end_ts index, which would scan every later interval); long
    ones come from the (long, start_ts) index."""
    iv = UsageInterval
    pg = s.get_bind().dialect.name == "postgresql"
    least, greatest = (func.least, func.greatest) if pg else (func.min, func.max)
    dur = iv.end_ts - iv.start_ts
    over = least(iv.end_ts, b) - greatest(iv.start_ts, a)
    frac = case((dur > 0, over / dur), else_=0.0)
    req = iv.gpus * dur
    charged = case((iv.used_gpu_s.is_(None), req), (iv.used_gpu_s > req, iv.used_gpu_s), else_=req)
    keys = [iv.tenant, iv.gpu_model, iv.kind] + ([iv.user] if by_user else [])
    sums = [func.sum(iv.gpus * over), func.sum(charged * frac), func.sum(iv.cpu * over),
            func.sum(iv.memory_gib * over), func.sum(iv.idle_s * frac * iv.gpus), func.sum(over),
            func.sum(case((and_(iv.start_ts >= a, iv.start_ts < b), 1), else_=0))]
    day = int(math.floor(a / DAY))
    for cond in ((iv.start_ts >= a - DAY, iv.long.is_(False)), (iv.long.is_(True),)):
        q = select(*keys, *sums).where(*cond, iv.start_ts < b, (iv.end_ts + 0) > a, *flt(iv)).group_by(*keys)
        for row in s.execute(q):
            tenant, model, kind = row[0], row[1], row[2]
            user = row[3] if by_user else None
            vals = row[4:] if by_user else row[3:]
            acc.add(day, tenant, user, model or "", kind, dict(zip(SUMS, (float(v or 0) for v in vals[:-1]))),
                    int(vals[-1] or 0))


def _cols():
    iv = UsageInterval
    return (iv.kind, iv.tenant, iv.user, iv.gpu_model, iv.gpus, iv.cpu, iv.memory_gib, iv.start_ts, iv.end_ts,
            iv.idle_s, iv.used_gpu_s)


def _add_interval(acc, r, a, b, now):
    runs = 1 if a <= r.start_ts < b else 0
    for day, part in interval_parts(r, a, b, now):
        acc.add(day, r.tenant, r.user, r.gpu_model or "", r.kind, part, runs)
        runs = 0
    if runs:  # zero-length interval started in the period
        acc.add(int(math.floor(r.start_ts / DAY)), r.tenant, r.user, r.gpu_model or "", r.kind, {}, 1)


def usage_report(s, start: float, end: float, group_by=("tenant",), tenants=None, users=None,
                 now: float | None = None, book: PriceBook | None = None) -> list[dict]:
    """Usage and cost in [start, end) (epoch seconds), one row per group. ``tenants``/``users``: only
    these (None: all)."""
    now = time.time() if now is None else now
    bad = [g for g in group_by if g not in GROUPS]
    if bad:
        raise ValueError(f"group_by must be among {GROUPS}, not {bad}")
    acc = _Acc(group_by, book or PriceBook.load(s))
    end = min(end, now)
    if end <= start:
        return []
    d1, d2 = int(math.ceil(start / DAY)), int(math.floor(end / DAY))

    def flt(model):
        return _filters(model, tenants, users)

    if d1 < d2:
        _whole_days(s, acc, d1, d2, group_by, users, flt)
        segments = [(start, d1 * DAY), (d2 * DAY, end)]
    else:
        segments = [(start, end)]
    for a0, b0 in segments:
        a = a0
        while a < b0:  # cut at UTC midnights: each raw part lies in one day
            b = min(b0, (math.floor(a / DAY) + 1) * DAY)
            _raw(s, acc, a, b, flt, "user" in group_by)
            a = b
    iv = UsageInterval
    for r in s.execute(select(*_cols()).where(iv.end_ts.is_(None), iv.start_ts < end, *flt(iv))):
        _add_interval(acc, r, start, end, now)
    _idle_spells(s, acc, start, end, now, flt)
    return acc.result()


_DAY_PK = {UsageDaily: ("day", "tenant", "user", "gpu_model", "kind"),
           UsageDailyTenant: ("day", "tenant", "gpu_model", "kind")}


def _whole_days(s, acc: _Acc, d1: int, d2: int, group_by, users, flt) -> None:
    """The whole days [d1, d2) from the rollups, one aggregate per run of days with the same prices (one more
    than the price changes in the period), grouped in SQL by exactly the report's grouping: within a run every
    price is constant, so the GPU cost is summed in SQL as GPU-seconds x (a CASE on the GPU model) and the
    database returns about one row per report row. Without a per-day grouping, per user: whole 8-day blocks from
    ``usage_block`` and only the days before the first / after the last whole block of a run from
    ``usage_daily`` (~5x fewer rows read than all days)."""
    by_user, by_day = "user" in group_by, "day" in group_by
    per_user = by_user or users is not None
    u = UsageDaily if per_user else UsageDailyTenant
    book = acc.book
    models = book.gpu_models()

    def rollup(model, where, lo):
        cols = list(group_by)
        pk = _DAY_PK.get(model)
        if pk and by_day:
            # Grouping in primary-key order lets SQLite aggregate while it walks the key's day range instead of
            # sorting every row first. With the user grouped, an extra tenant column adds few rows (a user is in
            # one or a few tenants), merged here (user, day: ~40% faster).
            n = max(pk.index(g) for g in group_by) + 1
            extra = set(pk[:n]) - set(group_by)
            if not extra or (extra == {"tenant"} and "user" in group_by):
                cols = list(pk[:n])
        keys = [getattr(model, c) for c in cols]
        gpu_price = case({m: book.price("gpu", m, lo) for m in models}, value=model.gpu_model,
                         else_=book.price("gpu", "", lo)) if models else book.price("gpu", "", lo)
        is_job = model.kind == "job"
        q = select(*keys, *[func.sum(getattr(model, x)) for x in SUMS],
                   func.sum(case((is_job, model.runs), else_=0)), func.sum(case((is_job, 0), else_=model.runs)),
                   func.sum(model.charged_gpu_s * gpu_price)).where(where, *flt(model))
        if keys:
            q = q.group_by(*keys)
        # Core, not the ORM: the rows are plain tuples to sum (the ORM's row processing doubled the time)
        acc.add_rollup(s.connection().execute(q), len(keys), [cols.index(g) for g in group_by],
                       (None, book.price("cpu", "", lo), book.price("memory", "", lo)))

    cuts = [d1] + [d for d in book.change_days() if d1 < d < d2] + [d2]
    for lo, hi in zip(cuts, cuts[1:]):
        b1, b2 = -(-lo // BLOCK_DAYS), hi // BLOCK_DAYS  # the whole blocks inside [lo, hi)
        if per_user and not by_day and b1 < b2:
            rollup(UsageBlock, and_(UsageBlock.blk >= b1, UsageBlock.blk < b2), lo)
            for a, b in ((lo, b1 * BLOCK_DAYS), (b2 * BLOCK_DAYS, hi)):  # two range scans (an OR of both
                if a < b:                                                 # scans the whole index on SQLite)
                    rollup(u, and_(u.day >= a, u.day < b), lo)
        else:
            rollup(u, and_(u.day >= lo, u.day < hi), lo)


def _idle_spells(s, acc: _Acc, start: float, end: float, now: float, flt) -> None:
    """Idle-held GPU time of servers from GPU monitoring's ``gpu_idle_intervals`` (issue 15 B: one row per
    idle spell, gpu_milli held, NULL end = idle now), clipped to the period, per day."""
    from job_runner.db.monitoring import GPUIdleInterval as gi

    q = s.query(gi).filter(gi.started_at < end, or_(gi.ended_at.is_(None), gi.ended_at > start), *flt(gi))
    spells = q.all()
    if not spells:
        return
    models = {}
    ids = sorted({x.allocation_id for x in spells})
    for i in range(0, len(ids), 900):
        models.update(s.query(UsageInterval.workload_id, UsageInterval.gpu_model).filter(
            UsageInterval.kind == "server", UsageInterval.workload_id.in_(ids[i:i + 900])).all())
    for x in spells:
        lo, hi = max(x.started_at, start), min(x.ended_at if x.ended_at is not None else now, end)
        t = lo
        while t < hi:
            day = int(math.floor(t / DAY))
            nxt = min(hi, (day + 1) * DAY)
            acc.add(day, x.tenant, x.user, models.get(x.allocation_id) or "", "server",
                    {"idle_gpu_s": (x.gpu_milli or 0) / 1000.0 * (nxt - t)})
            t = nxt
