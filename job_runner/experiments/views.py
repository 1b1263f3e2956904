"""What an experiment's trials are, read from their jobs: state, objective value, the best trial."""
from __future__ import annotations

from job_runner.db import CANCELLED, FAILED, SUCCEEDED

TRIAL_FINAL = ("completed", "pruned", "stopped", "failed", "cancelled")


def trial_state(job_state: str | None, stopped_by: str | None) -> str:
    if job_state is None:
        return "pending"
    if job_state == SUCCEEDED:
        return "completed"
    if job_state == FAILED and not stopped_by:
        return "failed"
    if job_state in (CANCELLED, FAILED):  # FAILED: it ended itself at the stop marker (report() raised)
        if stopped_by == "rule":
            return "pruned"
        return "stopped" if stopped_by else "cancelled"
    return job_state  # queued | admitted | running


def last_value(points) -> float | None:
    return points[-1][1] if points else None


def best(trials: list[dict], mode: str) -> dict | None:
    """The best trial by its objective at its last step: among completed trials, else (``provisional``)
    among all with a value."""
    sign = 1 if mode == "max" else -1
    done = [t for t in trials if t["state"] == "completed" and t["value"] is not None]
    pool = done or [t for t in trials if t["value"] is not None]
    if not pool:
        return None
    b = max(pool, key=lambda t: (sign * t["value"], -t["number"]))
    return {"trial": b["number"], "value": b["value"], "parameters": b["parameters"], "provisional": not done}
