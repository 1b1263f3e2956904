"""Schedules (issue 14): when a schedule's slots fall (``slots``: cron with a time zone through croniter and
zoneinfo, or the tenant's window openings with its holiday calendar) and what to do with the slots that
are due (``policy``: catch-up none/latest/all, bounded). The service (aistack_hub.services.schedules) writes
one row per (schedule, slot) before it submits anything. docs/pipelines.md."""
from .policy import CATCH_UP, CONCURRENCY, Decision, decide  # noqa: F401
from .slots import ScheduleError, cron_slots, next_slot, validate_cron, validate_tz, window_slots  # noqa: F401
