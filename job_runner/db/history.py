"""Run times of past jobs like a new one (same user, notebook and profile): what the start estimates of the
work queued behind it go on when its submission gives no ``expected_duration_s``."""
from __future__ import annotations

from job_runner.scheduling.estimates import history_range

from .models import SUCCEEDED, Job

# Recent runs only: a notebook's run time drifts as it is edited.
HISTORY_RUNS = 20


def past_run_times(session, user: str, profile: str, notebook_path: str | None, name: str,
                   limit: int = HISTORY_RUNS) -> list[float]:
    """Seconds from start to end of the last ``limit`` succeeded jobs of ``user`` with this profile and
    notebook (its path; the job's name for a notebook submitted unsaved). Failed and cancelled runs say
    little about how long a run takes, so they do not count."""
    q = (session.query(Job.started_at, Job.finished_at)
         .filter(Job.user == user, Job.profile == profile, Job.state == SUCCEEDED,
                 Job.started_at.isnot(None), Job.finished_at.isnot(None)))
    q = q.filter(Job.notebook_path == notebook_path) if notebook_path else q.filter(Job.notebook_path.is_(None),
                                                                                      Job.name == name)
    rows = q.order_by(Job.id.desc()).limit(limit).all()
    return [(f - s).total_seconds() for s, f in rows]


class HistoryLookup:
    """(shortest, typical, longest) run time per (user, profile, notebook), each looked up once: a sweep of a
    thousand jobs of one notebook costs one query."""

    def __init__(self, session):
        self.session = session
        self._cache: dict[tuple, tuple[float, float, float] | None] = {}

    def range_for(self, user: str, profile: str, notebook_path: str | None, name: str):
        key = (user, profile, notebook_path or None, None if notebook_path else name)
        if key not in self._cache:
            self._cache[key] = history_range(past_run_times(self.session, user, profile, notebook_path, name))
        return self._cache[key]
