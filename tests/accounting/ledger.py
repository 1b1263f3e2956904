"""The test's own ledger of slice-time, computed from the workloads' history (job_events, allocations) with
plain SQL — not from the accounting code — to check the recorded intervals against."""
from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy import create_engine, text

ACTIVE = ("admitted", "running")
GPUS = {"gpu-quarter": 0.25, "gpu-half": 0.5, "gpu-1": 1.0, "cpu": 0.0}


def ts(v) -> float:
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    return calendar.timegm(v.timetuple()) + v.microsecond / 1e6


def ledger(db_url: str) -> dict:
    """(kind, workload id, attempt) -> (start, end, GPUs) from the history alone."""
    eng = create_engine(db_url)
    out = {}
    try:
        with eng.connect() as c:
            profiles = dict(c.execute(text("SELECT id, profile FROM jobs")).all())
            state, since = {}, {}
            for job_id, at, to_state, attempt in c.execute(text(
                    "SELECT job_id, at, to_state, attempt FROM job_events ORDER BY id")):
                was = state.get(job_id)
                if to_state == "admitted":
                    since[job_id] = (attempt, ts(at))
                elif was in ACTIVE and to_state not in ACTIVE:
                    a, start = since.pop(job_id)
                    out[("job", job_id, a)] = (start, ts(at), GPUS[profiles[job_id]])
                state[job_id] = to_state
            for alloc_id, profile, allocated, released in c.execute(text(
                    "SELECT id, profile, allocated_at, released_at FROM allocations WHERE allocated_at IS NOT NULL")):
                out[("server", alloc_id, 0)] = (ts(allocated), ts(released) if released else None, GPUS[profile])
    finally:
        eng.dispose()
    return out


def recorded(db_url: str) -> dict:
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            return {(k, w, a): (s, e, g) for k, w, a, s, e, g in c.execute(text(
                "SELECT kind, workload_id, attempt, start_ts, end_ts, gpus FROM usage_intervals"))}
    finally:
        eng.dispose()


def rollup_gpu_s(db_url: str) -> float:
    eng = create_engine(db_url)
    try:
        with eng.connect() as c:
            return float(c.execute(text("SELECT COALESCE(SUM(gpu_s), 0) FROM usage_daily")).scalar())
    finally:
        eng.dispose()
