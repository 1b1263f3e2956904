"""Alarms: unhealthy GPUs (XID errors), full disks, a stuck queue, a sample source that cannot read.

Each check returns alarm dicts ``{kind, subject, severity, text}``; ``store.record_alarms`` opens,
refreshes and clears them (an XID alarm stays open ``xid_hold_s`` after the last XID: it is an event).
XIDs worth waking someone for are named (NVIDIA's XID catalogue); any other XID is a warning.
"""
from __future__ import annotations

import datetime as _dt
import shutil

from sqlalchemy import func, select

from job_runner.db import QUEUED, Job

# XIDs that mean the GPU needs attention (reset, drain, RMA), from NVIDIA's XID catalogue.
CRITICAL_XIDS = {
    48: "double-bit ECC error", 62: "internal micro-controller halt", 63: "ECC page retirement/row remap",
    64: "ECC page retirement/row remap failure", 74: "NVLink error", 79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate", 94: "contained ECC error", 95: "uncontained ECC error",
    119: "GSP RPC timeout", 120: "GSP error",
}


def xid_alarms(xids) -> list[dict]:
    out = {}
    for x in xids:
        what = CRITICAL_XIDS.get(x.xid)
        out[f"{x.node}/gpu{x.gpu}"] = {
            "kind": "gpu_xid", "subject": f"{x.node}/gpu{x.gpu}", "severity": "danger" if what else "warning",
            "text": f"GPU {x.gpu} of {x.node} reported XID {x.xid}" + (f" ({what}): drain and check it" if what
                                                                        else " (see NVIDIA's XID catalogue)")}
    return list(out.values())


def disk_alarms(paths, full_pct: float, usage=shutil.disk_usage) -> list[dict]:
    out = []
    for path in paths:
        try:
            u = usage(path)
        except OSError as e:
            out.append({"kind": "disk_full", "subject": path, "severity": "warning",
                        "text": f"disk of {path} cannot be read: {e}"})
            continue
        pct = 100.0 * u.used / u.total if u.total else 0.0
        if pct >= full_pct:
            out.append({"kind": "disk_full", "subject": path, "severity": "danger" if pct >= 98 else "warning",
                        "text": f"disk of {path} is {pct:.0f}% full ({u.free / 2**30:.1f} GiB free; alarm at "
                                f"{full_pct:g}%)"})
    return out


def queue_alarms(db, stuck_s: float, now: float) -> list[dict]:
    """The queue is stuck when its oldest job has waited ``stuck_s`` and no job started since then."""
    with db.read() as s:
        oldest, n = s.execute(select(func.min(Job.created_at), func.count()).where(Job.state == QUEUED)).one()
        if not n or oldest is None:
            return []
        started = s.scalar(select(func.max(Job.started_at)))
    utc = _dt.timezone.utc
    oldest_ts = oldest.replace(tzinfo=utc).timestamp()
    started_ts = started.replace(tzinfo=utc).timestamp() if started is not None else None
    waited = now - oldest_ts
    if waited < stuck_s or (started_ts is not None and now - started_ts < stuck_s):
        return []
    since = "never" if started_ts is None else f"{(now - started_ts) / 60:.0f} min ago"
    return [{"kind": "queue_stuck", "subject": "queue", "severity": "danger",
             "text": f"{n} job(s) queued, the oldest for {waited / 60:.0f} min, and no job started since "
                     f"(last start: {since}): check the scheduling loop and the GPUs"}]


def source_alarm(name: str, error: str) -> list[dict]:
    return [{"kind": "source", "subject": name, "severity": "warning",
             "text": f"GPU samples cannot be read ({name}): {error}"}]
