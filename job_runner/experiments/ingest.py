"""Metric ingest: ``report()``'s lines and Katib-style ``name=value`` stdout lines into ``job_metrics``.

Where the bytes come from is the caller's (the LocalExecutor's ``read_metrics`` for a local job's run
folder, a pod's POST of the same lines, the job's log for stdout); this module parses them and writes the
points with their read position (``metric_cursors``) in one transaction, so a restart never reads a line twice.
"""
from __future__ import annotations

import json
import math
import re

from sqlalchemy import insert, select

from job_runner.db.experiments import JobMetric, MetricCursor

# Katib's StdOut collector filter, as one regex: name=value with a number (several per line).
KATIB = re.compile(r"(?<![\w.-])([A-Za-z_][\w.\-/]*)\s*=\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])")
STEP_KEYS = ("step", "epoch", "iteration")
MAX_POINTS_PER_BATCH = 100_000


def parse_jsonl(data: bytes) -> list[tuple]:
    """``(step, name, value, at)`` of whole JSON lines (a bad line is skipped, never the batch)."""
    out = []
    for line in data.splitlines():
        try:
            p = json.loads(line)
            step, at, metrics = int(p["step"]), p.get("t"), p["m"]
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.append((step, str(name)[:64], float(value), at if isinstance(at, (int, float)) else None))
    return out[:MAX_POINTS_PER_BATCH]


def parse_stdout(text: str, names: set, state: dict) -> list[tuple]:
    """Points of ``name=value`` lines whose name is in ``names``; the step is the line's ``step``/``epoch``
    value, else a counter per line with metrics (kept in ``state`` with an unfinished last line)."""
    text = state.get("partial", "") + text
    lines = text.split("\n")
    state["partial"] = lines.pop()[-4096:]
    out = []
    for line in lines:
        pairs = KATIB.findall(line)
        if not pairs:
            continue
        found = {k: float(v) for k, v in pairs}
        step = next((int(found[k]) for k in STEP_KEYS if k in found), None)
        metrics = {k: v for k, v in found.items() if k in names and k not in STEP_KEYS and math.isfinite(v)}
        if not metrics:
            continue
        if step is None:
            step = state.get("step", 0) + 1
        state["step"] = step
        out.extend((step, k, v, None) for k, v in metrics.items())
    return out


def cursor(s, job_id: int, attempt: int, source: str) -> tuple[int, dict]:
    row = s.get(MetricCursor, (job_id, attempt, source))
    return (row.offset, dict(row.state or {})) if row is not None else (0, {})


def cursors(db, keys) -> dict:
    """``{(job_id, attempt, source): (offset, state)}`` for many keys at once."""
    keys = list(keys)
    if not keys:
        return {}
    with db.read() as s:
        ids = sorted({k[0] for k in keys})
        rows = s.execute(select(MetricCursor).where(MetricCursor.job_id.in_(ids))).scalars().all()
        have = {(r.job_id, r.attempt, r.source): (r.offset, dict(r.state or {})) for r in rows}
    return {k: have.get(k, (0, {})) for k in keys}


def write(s, job_id: int, attempt: int, points, source: str | None = None, offset: int | None = None,
          state: dict | None = None) -> int:
    """Insert ``points`` ((step, name, value, at)) and move the cursor, in the caller's transaction."""
    if points:
        s.execute(insert(JobMetric), [{"job_id": job_id, "attempt": attempt, "step": st, "name": n, "value": v,
                                       "at": at} for st, n, v, at in points])
    if source is not None:
        row = s.get(MetricCursor, (job_id, attempt, source))
        if row is None:
            s.add(MetricCursor(job_id=job_id, attempt=attempt, source=source, offset=offset, state=state))
        else:
            row.offset, row.state = offset, state
    return len(points)


def ingest(db, batches) -> int:
    """Many batches in one transaction: [(job_id, attempt, points, source, offset, state)]."""
    n = 0
    with db.session() as s:
        for job_id, attempt, points, source, offset, state in batches:
            n += write(s, job_id, attempt, points, source, offset, state)
    return n


def series(s, job_ids, names=None, after_id: int = 0) -> dict:
    """``{job_id: {name: [[step, value], ...]}}`` (by step; a step reported twice keeps the last value)."""
    out: dict = {}
    job_ids = list(job_ids)
    for start in range(0, len(job_ids), 900):
        q = select(JobMetric.job_id, JobMetric.name, JobMetric.step, JobMetric.value).where(
            JobMetric.job_id.in_(job_ids[start:start + 900]), JobMetric.id > after_id)
        if names:
            q = q.where(JobMetric.name.in_(list(names)))
        for job_id, name, step, value in s.execute(q.order_by(JobMetric.id)):
            out.setdefault(job_id, {}).setdefault(name, {})[step] = value
    return {j: {n: [[st, v] for st, v in sorted(pts.items())] for n, pts in m.items()} for j, m in out.items()}
