"""Server slices for the hub's spawner (``allocations`` rows): take-in, admission writes, release, preemption.

The API inserts a pending row (POST allocations) and marks it released (DELETE); the leader's pass
compares the live rows with the server workloads the core holds (few: one per running server) and submits or
releases the difference. Admission writes ``pending -> allocated`` with the assignment (no environment: the
spawner binds the slice itself from the assignment). Everything here runs in the controller's worker thread.
"""
from __future__ import annotations

import time

from sqlalchemy import update

from job_runner.db import ALLOC_ALLOCATED, ALLOC_PENDING, ALLOC_RELEASED, Allocation, utcnow
from job_runner.db.ops import epoch
from job_runner.scheduling import Verdict

from . import metrics
from .workloads import SERVER, WorkloadRef, server_workload


class Allocations:
    def __init__(self, ctl):
        self.ctl = ctl

    def wid(self, alloc_id: int) -> str:
        return self.ctl.refs.wid(WorkloadRef(SERVER, alloc_id))

    def db_take_in(self) -> set[str]:
        """Release what the API released, submit new allocations; returns the tenants of those taken in."""
        sched, refs, db = self.ctl.scheduler, self.ctl.refs, self.ctl.db
        with db.read() as s:
            live = {a.id: a for a in s.query(Allocation.id, Allocation.state, Allocation.tenant, Allocation.user,
                                             Allocation.priority, Allocation.request, Allocation.created_at)
                    .filter(Allocation.state.in_((ALLOC_PENDING, ALLOC_ALLOCATED)))}
        gone = refs.of_kind(SERVER) - set(live)
        for alloc_id in gone:  # released (DELETE allocations) or gone
            self.release(alloc_id)
        new = [a for a in live.values() if a.state == ALLOC_PENDING and self.wid(a.id) not in refs]
        if gone or new:
            self.ctl.read.invalidate()  # the users' server counts change
        if gone:  # accounting (issue 15 A): released by the API: intervals end at its released_at
            with db.session() as s:
                self.ctl.accounting.servers(s, gone)
        refused = []
        for a in new:
            alloc_id = a.id
            wid = refs.add(WorkloadRef(SERVER, alloc_id))
            try:
                verdict = sched.submit(server_workload(a, wid))
            except (ValueError, KeyError, TypeError) as e:  # a malformed row must not fail every pass
                verdict = Verdict(False, "invalid", f"cannot be scheduled: {e}")
            if not verdict.ok and verdict.reason != "duplicate":
                self.ctl.log.warning("allocation %s refused: %s", alloc_id, verdict.message)
                refs.forget(wid)
                refused.append((alloc_id, f"refused by the scheduler: {verdict.message or verdict.reason}"))
        if refused:
            with db.session() as s:
                for alloc_id, reason in refused:
                    s.execute(update(Allocation).where(Allocation.id == alloc_id)
                              .values(state=ALLOC_RELEASED, released_at=utcnow(), release_reason=reason))
        return {a.tenant for a in new}

    def release(self, alloc_id: int) -> None:
        wid = self.wid(alloc_id)
        sched = self.ctl.scheduler
        if sched is not None and not sched.release(wid):
            sched.cancel(wid)
        self.ctl.refs.forget(wid)

    def db_write_admissions(self, s, admitted) -> None:
        """``pending -> allocated`` for [(alloc id, Workload, Assignment)] in session ``s``; an allocation
        released meanwhile gives its slice back at once."""
        now = utcnow()
        for alloc_id, _, a in admitted:
            res = s.execute(update(Allocation).where(Allocation.id == alloc_id, Allocation.state == ALLOC_PENDING)
                            .values(state=ALLOC_ALLOCATED, assignment=a.to_dict(), allocated_at=now))
            if res.rowcount != 1:
                self.release(alloc_id)
                continue
            created = s.query(Allocation.created_at).filter(Allocation.id == alloc_id).scalar()
            metrics.SPAWN_LATENCY.observe(max(0.0, time.time() - (epoch(created) or time.time())))

    def db_preempted(self, s, ids) -> None:
        """Servers the core preempted (it released them already): released in the database."""
        for alloc_id in ids:
            self.ctl.refs.forget(self.wid(alloc_id))
        if ids:
            s.execute(update(Allocation).where(Allocation.id.in_(list(ids)))
                      .values(state=ALLOC_RELEASED, released_at=utcnow(), release_reason="preempted"))
            self.ctl.accounting.servers(s, ids)  # accounting (issue 15 A): same transaction

    def db_release_stale(self, alloc_id: int, reason: str) -> None:
        """A server slice whose placement is gone from the inventory (on restore): released with the reason
        (the server itself is the hub's; the admin page shows the release)."""
        with self.ctl.db.session() as s:
            s.execute(update(Allocation).where(Allocation.id == alloc_id, Allocation.state == ALLOC_ALLOCATED)
                      .values(state=ALLOC_RELEASED, released_at=utcnow(),
                              release_reason=f"placement gone: {reason}"))
            self.ctl.accounting.servers(s, [alloc_id])  # accounting (issue 15 A)
