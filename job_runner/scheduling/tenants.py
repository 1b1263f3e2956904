"""Tenants (JupyterHub groups), their quotas per resource group, and time windows."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

ANY = "any"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Quota:
    """Hard limits of a tenant in one resource group (a GPU model name, or ``"any"`` for all).
    None = unlimited. GPU in milli-GPU (1000 = one GPU)."""

    resource_group: str = ANY
    gpu_milli: int | None = None
    cpu_milli: int | None = None
    memory_mib: int | None = None
    max_servers_per_user: int | None = None
    max_running_jobs: int | None = None
    max_queued_jobs: int | None = None

    def __post_init__(self):
        for f in ("gpu_milli", "cpu_milli", "memory_mib", "max_servers_per_user", "max_running_jobs",
                  "max_queued_jobs"):
            v = getattr(self, f)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
                object.__setattr__(self, f, v)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"quota {self.resource_group!r}: {f} must be a non-negative integer or null, not {v!r}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TimeWindow:
    """When a tenant's workloads may start: ``days`` (0 = Monday) and ``[start_hour, end_hour)`` UTC.
    ``end_hour <= start_hour`` wraps past midnight (e.g. 20..6 = nights)."""

    days: frozenset = frozenset(range(7))
    start_hour: int = 0
    end_hour: int = 24

    def __post_init__(self):
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days <= set(range(7)) or not (0 <= self.start_hour <= 23 and 0 <= self.end_hour <= 24):
            raise ValueError("time window: days in 0..6, start_hour 0..23, end_hour 0..24")

    def contains(self, when: float) -> bool:
        t = dt.datetime.fromtimestamp(when, dt.timezone.utc)
        if self.start_hour < self.end_hour:
            return t.weekday() in self.days and self.start_hour <= t.hour < self.end_hour
        # wraps midnight: the window opened on day d at start_hour runs into day d+1
        if t.hour >= self.start_hour:
            return t.weekday() in self.days
        if t.hour < self.end_hour:
            return (t.weekday() - 1) % 7 in self.days
        return False

    @classmethod
    def parse(cls, spec: "str | dict | TimeWindow") -> "TimeWindow":
        """``{"days": ["sat","sun"], "hours": "0-24"}``, or ``"mon-fri 20-6"``, or ``"sat,sun"``."""
        if isinstance(spec, TimeWindow):
            return spec
        if isinstance(spec, str):
            parts = spec.split()
            spec = {"days": parts[0], "hours": parts[1] if len(parts) > 1 else "0-24"}
        days = spec.get("days", list(DAYS))
        if isinstance(days, str):
            days = _expand_days(days)
        day_ids = set()
        for d in days:
            d = str(d).lower()[:3]
            if d not in DAYS:
                raise ValueError(f"unknown day {d!r}")
            day_ids.add(DAYS.index(d))
        hours = str(spec.get("hours", "0-24"))
        try:
            start, end = (int(x) for x in hours.split("-"))
        except ValueError:
            raise ValueError(f"hours must look like '20-6', not {hours!r}") from None
        return cls(frozenset(day_ids), start, end)


def _expand_days(text: str) -> list[str]:
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = (DAYS.index(x.strip().lower()[:3]) for x in part.split("-"))
            out += [DAYS[(a + k) % 7] for k in range((b - a) % 7 + 1)]
        elif part.strip():
            out.append(part.strip())
    return out


def next_window_start(windows, when: float, horizon_s: float = 8 * 86400) -> float | None:
    """The first time >= ``when`` inside one of ``windows`` (None if none within the horizon)."""
    if not windows or any(w.contains(when) for w in windows):
        return when
    t = (int(when) // 3600 + 1) * 3600  # windows open on the hour
    while t <= when + horizon_s:
        if any(w.contains(t) for w in windows):
            return float(t)
        t += 3600
    return None


@dataclass(frozen=True)
class Tenant:
    """A team sharing the pool: quotas per resource group, fair-share weight, cohort for lending/borrowing
    idle quota (borrowing at most ``borrowing_limit_milli`` GPU beyond its own, None = what is idle),
    the priority grants (``high_users`` may submit ``high`` work, ``emergency_users`` ``emergency`` and
    ``high``: priority ranks before fair share, so it is granted per user and per tenant), the cap on the
    tenant's ``high`` work (``max_high_share``: the largest share, 0..1, of the pool's GPUs that its running
    ``high`` workloads may hold at once; None = no cap), tenant admins, time windows and server idle
    timeout, and the Kubernetes namespace of its servers and jobs (None = not on Kubernetes, or the
    deployment's one)."""

    name: str
    quotas: dict = field(default_factory=dict)
    weight: float = 1.0
    cohort: str | None = None
    borrowing_limit_milli: int | None = None
    emergency_users: frozenset = frozenset()
    high_users: frozenset = frozenset()
    max_high_share: float | None = None
    admins: frozenset = frozenset()
    windows: tuple = ()
    idle_timeout_s: float | None = None
    namespace: str | None = None

    def __post_init__(self):
        for name in ("emergency_users", "high_users", "admins"):
            users = getattr(self, name)
            if isinstance(users, str) or not all(isinstance(u, str) for u in users):
                raise ValueError(f"tenant {self.name}: {name} must be a list of user names")
            object.__setattr__(self, name, frozenset(users))
        share = self.max_high_share
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 <= share <= 1):
            raise ValueError(f"tenant {self.name}: max_high_share must be a number from 0 to 1 or null, "
                             f"not {share!r}")
        object.__setattr__(self, "windows", tuple(TimeWindow.parse(w) for w in self.windows))
        quotas = {}
        for key, q in dict(self.quotas).items():
            if isinstance(q, dict):
                unknown = set(q) - set(Quota.__dataclass_fields__)
                if unknown:
                    raise ValueError(f"tenant {self.name}: unknown quota fields {sorted(unknown)}")
                q = Quota(resource_group=q.get("resource_group", key), **{k: v for k, v in q.items() if k != "resource_group"})
            quotas[q.resource_group] = q
        object.__setattr__(self, "quotas", quotas)
        if self.weight <= 0:
            raise ValueError(f"tenant {self.name}: weight must be > 0")

    def quota(self, group: str) -> Quota | None:
        return self.quotas.get(group)

    def may_use(self, priority: str, user: str) -> bool:
        """Whether ``user`` holds the grant ``priority`` needs here (``normal`` needs none; the
        emergency grant includes ``high``)."""
        if priority == "emergency":
            return user in self.emergency_users
        if priority == "high":
            return user in self.high_users or user in self.emergency_users
        return True

    def grant_refusal(self, priority: str, user: str) -> str | None:
        """Why ``user`` may not use ``priority`` here (None: they may): the one message for a missing grant."""
        if self.may_use(priority, user):
            return None
        return (f"user {user!r} has no grant for {priority} priority in tenant {self.name!r}: ask an admin of "
                f"the platform to grant it, or submit with normal priority")

    @classmethod
    def from_config(cls, d: dict) -> "Tenant":
        """Build from a config/API dict; ValueError (with the field) on anything malformed."""
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"tenant {d.get('name')!r}: unknown fields {sorted(unknown)}")
        if not isinstance(d.get("name"), str) or not d.get("name"):
            raise ValueError("a tenant needs a name")
        quotas = d.pop("quotas", {})
        if isinstance(quotas, list):
            quotas = {q.get("resource_group", ANY): q for q in quotas}
        return cls(quotas=quotas, **d)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "quotas": {g: q.to_dict() for g, q in self.quotas.items()}, "weight": self.weight,
            "cohort": self.cohort, "borrowing_limit_milli": self.borrowing_limit_milli,
            "emergency_users": sorted(self.emergency_users), "high_users": sorted(self.high_users),
            "max_high_share": self.max_high_share, "admins": sorted(self.admins),
            "windows": [{"days": [DAYS[d] for d in sorted(w.days)], "hours": f"{w.start_hour}-{w.end_hour}"}
                        for w in self.windows],
            "idle_timeout_s": self.idle_timeout_s,
            "namespace": self.namespace,
        }
