"""Splitting intervals into UTC days, and the daily rollup (``usage_daily``) written as intervals close.

Every figure of a report is a sum of per-day parts of intervals (``day_parts``): the rollup holds the parts of
closed intervals; a report reads whole days from it and computes the partial days and the open intervals
with the same function, so that both paths give the same numbers.
"""
from __future__ import annotations

import math

from sqlalchemy import insert

from job_runner.db.accounting import UsageBlock, UsageDaily, UsageDailyTenant

DAY = 86400.0
SUMS = ("gpu_s", "charged_gpu_s", "cpu_s", "mem_gib_s", "idle_gpu_s", "held_s")
# usage_block's block length (migration 0011 fills it with the same number): short enough that a period's ends
# read few day rows (< 8 per end), long enough that 90 days are ~11 block rows per key.
BLOCK_DAYS = 8


def day_of(ts: float) -> int:
    return int(math.floor(ts / DAY))


def charged_total(gpus: float, duration: float, used_gpu_s: float | None) -> float:
    """OpenCost's rule: max(request, usage) when the usage is known, else the request (GPU-seconds)."""
    req = gpus * duration
    return req if used_gpu_s is None else max(req, used_gpu_s)


def day_parts(start: float, end: float, gpus: float, cpu: float, mem: float, idle_s: float = 0.0,
              used_gpu_s: float | None = None, a: float | None = None, b: float | None = None):
    """The interval [start, end) clipped to [a, b), cut at UTC midnights: yields (day, {sum: value}).
    Charged GPU-seconds and idle seconds are spread over the interval in proportion to time."""
    lo = start if a is None else max(start, a)
    hi = end if b is None else min(end, b)
    duration = end - start
    if hi <= lo or duration <= 0:
        return
    charged = charged_total(gpus, duration, used_gpu_s)
    t = lo
    while t < hi:
        day = day_of(t)
        nxt = min(hi, (day + 1) * DAY)
        d = nxt - t
        frac = d / duration
        yield day, {"gpu_s": gpus * d, "charged_gpu_s": charged * frac, "cpu_s": cpu * d, "mem_gib_s": mem * d,
                    "idle_gpu_s": idle_s * frac * gpus, "held_s": d}
        t = nxt


def interval_parts(iv, a=None, b=None, now: float | None = None):
    """``day_parts`` of an interval row (or mapping); an open one counts up to ``now``."""
    g = (lambda k: iv.get(k)) if isinstance(iv, dict) else (lambda k: getattr(iv, k))
    end = g("end_ts")
    if end is None:
        end = now
    return day_parts(g("start_ts"), end, g("gpus"), g("cpu"), g("memory_gib"), g("idle_s") or 0.0,
                     g("used_gpu_s"), a, b)


TENANT_KEYS = ("day", "tenant", "gpu_model", "kind")
USER_KEYS = ("day", "tenant", "user", "gpu_model", "kind")
BLOCK_KEYS = ("blk", "tenant", "user", "gpu_model", "kind")


def _summed(rows: list[dict], key) -> dict:
    out: dict[tuple, dict] = {}
    for r in rows:
        t = out.setdefault(key(r), dict.fromkeys(SUMS, 0.0) | {"runs": 0})
        for c in SUMS + ("runs",):
            t[c] += r[c]
    return out


def _upsert(s, rows: list[dict]) -> None:
    """Add ``rows`` (per day, tenant, user, model, kind) to the three rollups: per user and day, per tenant and
    day, per user and 8-day block — all in the caller's transaction, so they always agree."""
    if not rows:
        return
    per_tenant = _summed(rows, lambda r: tuple(r[k] for k in TENANT_KEYS))
    per_block = _summed(rows, lambda r: (r["day"] // BLOCK_DAYS, r["tenant"], r["user"], r["gpu_model"], r["kind"]))
    _upsert_into(s, UsageDaily, USER_KEYS, rows)
    _upsert_into(s, UsageDailyTenant, TENANT_KEYS, [dict(zip(TENANT_KEYS, k), **v) for k, v in per_tenant.items()])
    _upsert_into(s, UsageBlock, BLOCK_KEYS, [dict(zip(BLOCK_KEYS, k), **v) for k, v in per_block.items()])


def _upsert_into(s, model, keys, rows: list[dict]) -> None:
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        mod = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
        stmt = mod.insert(model)
        t = model.__table__
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: t.c[c] + stmt.excluded[c] for c in SUMS + ("runs",)})
        s.execute(stmt, rows)
        return
    for r in rows:  # other databases: read-modify-write (the writing session holds the lock)
        cur = s.get(model, tuple(r[k] for k in keys))
        if cur is None:
            s.execute(insert(model), [r])
        else:
            for c in SUMS + ("runs",):
                setattr(cur, c, getattr(cur, c) + r[c])


def roll_up(s, closed: list[dict]) -> None:
    """Add closed intervals (mappings with the interval columns) to the daily rollup, in session ``s``."""
    acc: dict[tuple, dict] = {}
    for iv in closed:
        base = (iv["tenant"], iv["user"], iv["gpu_model"] or "", iv["kind"])
        first = day_of(iv["start_ts"])
        seen_first = False
        for day, part in interval_parts(iv):
            row = acc.setdefault((day,) + base, dict.fromkeys(SUMS, 0.0) | {"runs": 0})
            for k, v in part.items():
                row[k] += v
            if day == first and not seen_first:
                row["runs"] += 1
                seen_first = True
        if not seen_first:  # a zero-length interval still counts as a run
            acc.setdefault((first,) + base, dict.fromkeys(SUMS, 0.0) | {"runs": 0})["runs"] += 1
    _upsert(s, [{"day": k[0], "tenant": k[1], "user": k[2], "gpu_model": k[3], "kind": k[4], **v}
                for k, v in acc.items()])


def adjust(s, before: dict, after: dict) -> None:
    """A closed interval's idle time or measured usage changed after its rollup: add what it counts now
    (``after``) minus what it counted (``before``), per day (mappings with the interval columns)."""
    rows = {}
    for sign, x in ((1, after), (-1, before)):
        for day, part in interval_parts(x):
            row = rows.setdefault(day, dict.fromkeys(SUMS, 0.0))
            for k in ("charged_gpu_s", "idle_gpu_s"):
                row[k] += sign * part[k]
    _upsert(s, [{"day": day, "tenant": after["tenant"], "user": after["user"], "gpu_model": after["gpu_model"] or "",
                 "kind": after["kind"], **v, "runs": 0} for day, v in rows.items()])
