"""What to do with a schedule's due slots: fire them, or record them as skipped.

A slot is *on time* while ``now - slot <= starting_deadline_s`` (Kubernetes CronJob's
startingDeadlineSeconds); older ones were *missed* (the service was down, or the leader changed). The
catch-up policy (Airflow's catchup, bounded; on-time slots always fire): ``none`` catches up nothing,
``latest`` the newest missed slot (Kubernetes CronJob's behaviour), ``all`` every due slot up to
``catch_up_max`` (the newest kept). The rest are
recorded as skipped, so the history says what did not run and why.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

CATCH_UP = ("none", "latest", "all")
CONCURRENCY = ("Allow", "Forbid", "Replace")


@dataclass
class Decision:
    fire: list = field(default_factory=list)
    skip: list = field(default_factory=list)  # (slot, reason)
    caught_up: set = field(default_factory=set)  # fired slots that were missed (fired late, by catch-up)


def decide(due: list, now: dt.datetime, catch_up: str, catch_up_max: int, deadline_s: float) -> Decision:
    """``due``: slots oldest first, all <= now."""
    d = Decision()
    if not due:
        return d
    on_time = [s for s in due if (now - s).total_seconds() <= deadline_s]
    missed = [s for s in due if s not in on_time]
    if catch_up == "latest":
        d.fire = missed[-1:] + on_time[-max(1, catch_up_max):]
    elif catch_up == "all":
        d.fire = due[-max(1, catch_up_max):]
    else:
        d.fire = on_time[-max(1, catch_up_max):]
    fired = set(d.fire)
    d.caught_up = fired & set(missed)
    for s in due:
        if s not in fired:
            why = ("missed (the service was not running at its time); catch_up: " + catch_up) if s in missed else (
                f"more than catch_up_max={catch_up_max} slots were due")
            d.skip.append((s, why))
    return d
