"""A schedule's slots: cron expressions in a time zone (croniter, zoneinfo), or the openings of a tenant's
time windows (``job_runner.scheduling.TimeWindow``, UTC) and of its holidays (whole days, in the schedule's
time zone). Times in and out are naive UTC datetimes, as the database keeps them.

Cron: 5 fields (minute hour day month weekday), or 6 with croniter's trailing seconds field
(``* * * * * */10``: every 10 seconds).
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

UTC = dt.timezone.utc


class ScheduleError(ValueError):
    def __init__(self, message: str, field: str, code: str = "bad_schedule"):
        super().__init__(message)
        self.message, self.field, self.code = message, field, code


def validate_tz(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64 or ".." in name or name.startswith("/"):
        raise ScheduleError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')", "timezone", "bad_timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')", "timezone",
                            "bad_timezone") from None


def validate_cron(expr: str, min_interval_s: float = 1.0) -> str:
    if not isinstance(expr, str) or not 5 <= len(expr.split()) <= 6:
        raise ScheduleError(f"cron {expr!r} needs 5 fields (minute hour day month weekday) or 6 (with seconds last)",
                            "cron", "bad_cron")
    try:
        it = croniter(expr, dt.datetime(2026, 1, 1, tzinfo=UTC))
        a = it.get_next(dt.datetime)
        b = it.get_next(dt.datetime)
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as e:
        raise ScheduleError(f"invalid cron {expr!r}: {e}", "cron", "bad_cron") from None
    if (b - a).total_seconds() < min_interval_s:
        raise ScheduleError(f"cron {expr!r} fires more often than every {min_interval_s:g} s", "cron", "bad_cron")
    return expr


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=UTC)


def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def cron_slots(expr: str, tz: str, after: dt.datetime, until: dt.datetime, limit: int) -> tuple[list, bool]:
    """Slots in ``(after, until]``, the newest ``limit`` of them (oldest first); True if older ones were left out."""
    it = croniter(expr, _aware(until).astimezone(validate_tz(tz)) + dt.timedelta(microseconds=1))
    out = []
    while len(out) < limit:
        t = _naive(it.get_prev(dt.datetime))
        if t <= after:
            return out[::-1], False
        out.append(t)
    t = _naive(it.get_prev(dt.datetime))
    return out[::-1], t > after


def next_slot(expr: str | None, tz: str, after: dt.datetime, windows=(), holidays=frozenset()) -> dt.datetime | None:
    if expr:
        return _naive(croniter(expr, _aware(after).astimezone(validate_tz(tz))).get_next(dt.datetime))
    got, _ = window_slots(windows, holidays, tz, after, after + dt.timedelta(days=8), 1, newest=False)
    return got[0] if got else None


def _open(t: dt.datetime, windows, holidays, zone) -> bool:
    if _aware(t).astimezone(zone).date() in holidays:
        return True
    ts = _aware(t).timestamp()
    return any(w.contains(ts) for w in windows)


def window_slots(windows, holidays, tz: str, after: dt.datetime, until: dt.datetime, limit: int,
                 newest: bool = True) -> tuple[list, bool]:
    """When the tenant's window opens in ``(after, until]`` (at most 8 days back): a window's first hour, or
    a holiday's local midnight, when the time just before was closed."""
    zone = validate_tz(tz)
    after = max(after, until - dt.timedelta(days=8))
    start = after.replace(minute=0, second=0, microsecond=0)
    cands = set()
    t = start
    while t <= until:
        cands.add(t)
        t += dt.timedelta(hours=1)
    day = _aware(after).astimezone(zone).date()
    while day <= _aware(until).astimezone(zone).date():
        if day in holidays:
            cands.add(_naive(dt.datetime.combine(day, dt.time(), zone)))
        day += dt.timedelta(days=1)
    out = [c for c in sorted(cands) if after < c <= until and _open(c, windows, holidays, zone)
           and not _open(c - dt.timedelta(seconds=1), windows, holidays, zone)]
    if newest:
        return out[-limit:], len(out) > limit
    return out[:limit], len(out) > limit
