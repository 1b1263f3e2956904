"""State transitions of jobs, written as compare-and-set updates with an event row.

``transition`` changes a job's state only if it is still in ``from_states``: two replicas (or the API and
the scheduling loop) racing on one job can never both win, which is what keeps a job from running twice.
"""
from __future__ import annotations

import calendar
import datetime as _dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from .models import Job, JobEvent, utcnow


def epoch(ts: _dt.datetime | None) -> float | None:
    return None if ts is None else calendar.timegm(ts.timetuple()) + ts.microsecond / 1e6


def iso(ts: _dt.datetime | None) -> str | None:
    return None if ts is None else ts.replace(microsecond=ts.microsecond).isoformat() + "Z"


def transition(s: Session, job_id: int, from_states, to_state: str, message: str | None = None,
               replica: str | None = None, attempt: int | None = None, **values) -> bool:
    """Move job ``job_id`` from one of ``from_states`` to ``to_state`` (plus column ``values``).
    Returns False (and changes nothing) when the job is no longer in ``from_states``."""
    if isinstance(from_states, str):
        from_states = (from_states,)
    now = utcnow()
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(from_states))
        .values(state=to_state, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        return False
    if attempt is None:
        attempt = s.query(Job.attempt).filter(Job.id == job_id).scalar() or 0
    from_state = from_states[0] if len(from_states) == 1 else None
    s.add(JobEvent(job_id=job_id, at=now, from_state=from_state, to_state=to_state, attempt=attempt,
                   message=message, replica=replica))
    return True


def transition_many(s: Session, changes: list[dict], replica: str | None = None) -> set[int]:
    """Many transitions in three statements: lock and read the rows, one executemany UPDATE, one bulk INSERT of
    events. Each change: ``{"id", "from": tuple of states, "to", "message", "attempt"?, **column values}``.
    Returns the ids that changed (those still in their ``from`` states). The rows are locked first
    (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's writing session already holds the database's write
    lock), so the check and the update cannot be split by another writer."""
    from sqlalchemy import insert, select

    if not changes:
        return set()
    ids = [c["id"] for c in changes]
    current = {}
    for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
        q = select(Job.id, Job.state, Job.attempt).where(Job.id.in_(ids[start:start + 900])).with_for_update()
        current.update({r.id: (r.state, r.attempt) for r in s.execute(q)})
    now = utcnow()
    groups: dict[tuple, list] = {}
    events, done = [], set()
    for c in changes:
        state, attempt = current.get(c["id"], (None, 0))
        if state not in c["from"]:
            continue
        values = {k: v for k, v in c.items() if k not in ("from", "to", "message")}
        values.update(state=c["to"], updated_at=now)
        values.setdefault("attempt", attempt)
        groups.setdefault(tuple(sorted(values)), []).append(values)
        events.append({"job_id": c["id"], "at": now, "from_state": state, "to_state": c["to"],
                       "attempt": values["attempt"], "message": c.get("message"), "replica": replica})
        done.add(c["id"])
    for rows in groups.values():
        s.execute(update(Job), rows)  # ORM bulk UPDATE by primary key (executemany)
    if events:
        s.execute(insert(JobEvent), events)
    return done
