"""The monitoring tables' reads and writes (``job_runner.db.monitoring``), one function per job."""
from __future__ import annotations

import re

from sqlalchemy import delete, func, select

from job_runner.db import ALLOC_ALLOCATED, RUNNING, Allocation, Job
from job_runner.db.monitoring import (
    AlarmRow,
    GPUIdleInterval,
    GPUIdlePolicyRow,
    GPUIdleState,
    GPUSampleRow,
    WorkloadSampleRow,
)

from .culling import Policy, observe

POLICY_FIELDS = ("enabled", "threshold_pct", "idle_s", "warn_s", "max_keep_hours")


def gpu_milli_of(asg: dict) -> int:
    """The milli-GPUs a slice holds: a share its milli, whole GPUs 1000 each, a MIG instance its compute
    slices out of 7 (``3g.40gb``: 3/7 = 428)."""
    if not asg:
        return 0
    if asg.get("mig"):
        m = re.match(r"(\d+)g", str(asg["mig"][1]))
        return int(1000 * int(m.group(1)) / 7) if m else 0
    milli = int(asg.get("gpu_milli") or 0)
    return milli if 0 < milli < 1000 else 1000 * len(asg.get("gpu_indices") or [])


def active_workloads(db) -> list[dict]:
    """Server slices and running jobs that hold a GPU, as ``attribution.attribute`` takes them."""
    out = []
    with db.read() as s:
        for a in s.scalars(select(Allocation).where(Allocation.state == ALLOC_ALLOCATED)):
            if gpu_milli_of(a.assignment or {}):
                out.append({"workload": f"alloc:{a.id}", "allocation_id": a.id, "tenant": a.tenant, "user": a.user,
                            "server_name": a.server_name, "assignment": a.assignment,
                            "gpu_milli": gpu_milli_of(a.assignment)})
        for j in s.scalars(select(Job).where(Job.state == RUNNING)):
            if gpu_milli_of(j.assignment or {}):
                out.append({"workload": f"job:{j.id}", "tenant": j.tenant, "user": j.user,
                            "assignment": j.assignment, "gpu_milli": gpu_milli_of(j.assignment)})
    return out


def write_samples(db, reading, workload_samples) -> None:
    with db.session() as s:
        s.add_all([GPUSampleRow(ts=reading.ts, node=g.node, gpu=g.gpu, model=g.model, util_pct=g.util_pct,
                                engine_active=g.engine_active, mem_used_mib=g.mem_used_mib,
                                mem_total_mib=g.mem_total_mib) for g in reading.gpus])
        s.add_all([WorkloadSampleRow(ts=w.ts, workload=w.workload, tenant=w.tenant, user=w.user,
                                     util_pct=w.util_pct, mem_used_mib=w.mem_used_mib) for w in workload_samples])


def policy_overrides(db) -> dict[str, dict]:
    with db.read() as s:
        return {r.tenant: {f: getattr(r, f) for f in POLICY_FIELDS} for r in s.scalars(select(GPUIdlePolicyRow))}


def set_policy(db, tenant: str, fields: dict, now: float) -> dict:
    """Store the tenant's override (None fields: the default); returns the stored override."""
    with db.session() as s:
        row = s.get(GPUIdlePolicyRow, tenant) or GPUIdlePolicyRow(tenant=tenant)
        for f in POLICY_FIELDS:
            if f in fields:
                setattr(row, f, fields[f])
        row.updated_at = now
        s.add(row)
        return {f: getattr(row, f) for f in POLICY_FIELDS}


def observe_idle(db, workloads: list[dict], samples, policy_for, ts: float) -> list[str]:
    """Fold this pass's server samples into their idle state and idle intervals; returns events."""
    by_key = {w.workload: w for w in samples}
    events = []
    with db.session() as s:
        for w in workloads:
            aid = w.get("allocation_id")
            if aid is None or w["workload"] not in by_key:
                continue
            st = s.get(GPUIdleState, aid)
            if st is None:
                st = GPUIdleState(allocation_id=aid, tenant=w["tenant"], user=w["user"],
                                  server_name=w.get("server_name", ""))
                s.add(st)
            policy: Policy = policy_for(w["tenant"])
            ev = observe(st, by_key[w["workload"]].util_pct, ts, policy.threshold_pct)
            if ev == "idle_started":
                s.add(GPUIdleInterval(allocation_id=aid, tenant=w["tenant"], user=w["user"],
                                      gpu_milli=w["gpu_milli"], started_at=ts))
            elif ev == "idle_ended":
                _close(s, aid, ts, "active")
            events.append(f"{w['workload']}:{ev}")
        # slices released since: their open interval ends when they were released
        gone = s.execute(select(GPUIdleState, Allocation.released_at).join(
            Allocation, Allocation.id == GPUIdleState.allocation_id).where(Allocation.state != ALLOC_ALLOCATED)).all()
        for st, released_at in gone:
            end = released_at.timestamp() if released_at is not None and released_at.tzinfo else (
                _naive_utc_ts(released_at) if released_at is not None else ts)
            _close(s, st.allocation_id, min(end, ts), "stopped" if st.stopped_at else "released")
            s.delete(st)
    return events


def _naive_utc_ts(d) -> float:
    from datetime import timezone

    return d.replace(tzinfo=timezone.utc).timestamp()


def _close(s, allocation_id: int, ts: float, reason: str) -> None:
    for iv in s.scalars(select(GPUIdleInterval).where(GPUIdleInterval.allocation_id == allocation_id,
                                                      GPUIdleInterval.ended_at.is_(None))):
        iv.ended_at, iv.end_reason = max(ts, iv.started_at), reason


def idle_state(db, allocation_id: int):
    with db.read() as s:
        st = s.get(GPUIdleState, allocation_id)
        if st is not None:
            s.expunge(st)
        return st


def update_state(db, allocation_id: int, **fields) -> bool:
    with db.session() as s:
        st = s.get(GPUIdleState, allocation_id)
        if st is None:
            return False
        for k, v in fields.items():
            setattr(st, k, v)
        return True


def idle_states_of(db, user: str | None = None, tenant: str | None = None) -> list:
    with db.read() as s:
        q = select(GPUIdleState)
        if user is not None:
            q = q.where(GPUIdleState.user == user)
        if tenant is not None:
            q = q.where(GPUIdleState.tenant == tenant)
        rows = list(s.scalars(q.order_by(GPUIdleState.allocation_id).limit(500)))
        for r in rows:
            s.expunge(r)
        return rows


def idle_intervals(db, since: float, until: float, tenant: str | None = None, limit: int = 10000) -> list[dict]:
    """Idle-held intervals overlapping [since, until), clipped to it; open ones end at ``until``."""
    with db.read() as s:
        q = select(GPUIdleInterval).where(GPUIdleInterval.started_at < until,
                                          (GPUIdleInterval.ended_at.is_(None)) | (GPUIdleInterval.ended_at > since))
        if tenant:
            q = q.where(GPUIdleInterval.tenant == tenant)
        out = []
        for iv in s.scalars(q.order_by(GPUIdleInterval.id).limit(limit)):
            start, end = max(iv.started_at, since), min(iv.ended_at if iv.ended_at is not None else until, until)
            out.append({"allocation_id": iv.allocation_id, "tenant": iv.tenant, "user": iv.user,
                        "gpu_milli": iv.gpu_milli, "start": start, "end": end, "open": iv.ended_at is None,
                        "end_reason": iv.end_reason, "idle_gpu_hours": iv.gpu_milli / 1000 * (end - start) / 3600})
        return out


def gpu_history(db, since: float, until: float, points: int = 240) -> list[dict]:
    """Per GPU, mean utilisation and memory in ``points`` equal buckets of [since, until)."""
    width = max(1.0, (until - since) / max(1, points))
    bucket = func.floor((GPUSampleRow.ts - since) / width)
    with db.read() as s:
        rows = s.execute(select(GPUSampleRow.node, GPUSampleRow.gpu, bucket.label("b"),
                                func.avg(func.coalesce(GPUSampleRow.engine_active * 100, GPUSampleRow.util_pct)),
                                func.avg(GPUSampleRow.mem_used_mib), func.max(GPUSampleRow.mem_total_mib))
                         .where(GPUSampleRow.ts >= since, GPUSampleRow.ts < until)
                         .group_by(GPUSampleRow.node, GPUSampleRow.gpu, "b").order_by("b")).all()
    series: dict[str, dict] = {}
    for node, gpu, b, util, mem, total in rows:
        sr = series.setdefault(f"{node}/{gpu}", {"gpu": f"{node}/{gpu}", "points": []})
        sr["points"].append({"ts": since + (int(b) + 0.5) * width, "util_pct": util, "mem_used_mib": mem,
                             "mem_total_mib": total})
    return sorted(series.values(), key=lambda x: x["gpu"])


def latest_workloads(db, since: float) -> list[dict]:
    """Each workload's newest sample after ``since``."""
    with db.read() as s:
        newest = (select(WorkloadSampleRow.workload, func.max(WorkloadSampleRow.ts).label("ts"))
                  .where(WorkloadSampleRow.ts >= since).group_by(WorkloadSampleRow.workload).subquery())
        rows = s.scalars(select(WorkloadSampleRow).join(
            newest, (WorkloadSampleRow.workload == newest.c.workload) & (WorkloadSampleRow.ts == newest.c.ts))
            .limit(5000))
        return [{"workload": r.workload, "tenant": r.tenant, "user": r.user, "ts": r.ts, "util_pct": r.util_pct,
                 "mem_used_mib": r.mem_used_mib} for r in rows]


def prune(db, before: float) -> int:
    with db.session() as s:
        n = s.execute(delete(GPUSampleRow).where(GPUSampleRow.ts < before)).rowcount or 0
        n += s.execute(delete(WorkloadSampleRow).where(WorkloadSampleRow.ts < before)).rowcount or 0
        n += s.execute(delete(AlarmRow).where(AlarmRow.cleared_at < before)).rowcount or 0
    return n


def record_alarms(db, raised: list[dict], kinds: set[str], now: float, hold: dict[str, float]) -> None:
    """Open/refresh ``raised`` alarms; clear open alarms of ``kinds`` not raised now (a kind in ``hold``
    stays open that many seconds after it was last raised: an XID is an event, not a state)."""
    keys = {(a["kind"], a["subject"]) for a in raised}
    with db.session() as s:
        open_rows = {(r.kind, r.subject): r for r in s.scalars(select(AlarmRow).where(AlarmRow.cleared_at.is_(None)))}
        for a in raised:
            row = open_rows.get((a["kind"], a["subject"]))
            if row is None:
                s.add(AlarmRow(kind=a["kind"], subject=a["subject"], severity=a.get("severity", "warning"),
                               text=a["text"], first_at=now, last_at=now))
            else:
                row.last_at, row.text, row.severity = now, a["text"], a.get("severity", row.severity)
        for key, row in open_rows.items():
            if key in keys or row.kind not in kinds:
                continue
            if now - row.last_at >= hold.get(row.kind, 0):
                row.cleared_at = now


def open_alarms(db, limit: int = 200) -> list[dict]:
    with db.read() as s:
        rows = s.scalars(select(AlarmRow).where(AlarmRow.cleared_at.is_(None)).order_by(AlarmRow.id.desc()).limit(limit))
        return [{"id": r.id, "kind": r.kind, "subject": r.subject, "severity": r.severity, "text": r.text,
                 "first_at": r.first_at, "last_at": r.last_at} for r in rows]
