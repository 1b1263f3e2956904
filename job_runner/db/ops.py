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
