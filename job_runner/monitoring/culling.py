"""GPU-aware idle culling, the decision (pure; the state lives in ``gpu_idle_state``).

A server slice that holds a GPU is *idle* while its GPU activity (``WorkloadSample.util_pct``: DCGM's
graphics-engine activity where known, else NVML/DCGM utilisation) stays under ``threshold_pct``. Once it
has been idle for ``idle_s`` it is stopped; ``warn_s`` before that the user is warned (a JupyterLab
notification with "keep for N hours", and the hub pages' banner). "Keep" sets ``keep_until``: no stop
before then; if the GPU is still idle then, a fresh warning and a stop ``warn_s`` later. Activity above
the threshold ends the idle spell (and withdraws a warning). No fresh sample for ``stale_s`` (the sampler
stopped, the GPU vanished) means *unknown*, and unknown is never idle: nothing is stopped on old data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

OK, WARN, STOP = "ok", "warn", "stop"
POLICY_KEYS = ("enabled", "threshold_pct", "idle_s", "warn_s", "max_keep_hours")


@dataclass(frozen=True)
class Policy:
    enabled: bool = True
    threshold_pct: float = 1.0  # gpu-pruner's default: < 1% engine activity
    idle_s: float = 1800.0
    warn_s: float = 300.0
    max_keep_hours: float = 24.0

    def merged(self, override: dict | None) -> "Policy":
        """This policy with the tenant's non-null fields."""
        if not override:
            return self
        fields = {k: v for k, v in override.items() if k in self.__dataclass_fields__ and v is not None}
        return Policy(**{**asdict(self), **fields})

    def check(self) -> "Policy":
        """ValueError with the field and what is wrong."""
        if not 0 <= self.threshold_pct <= 100:
            raise ValueError(f"threshold_pct must be from 0 to 100, not {self.threshold_pct:g}")
        if self.idle_s <= 0:
            raise ValueError(f"idle_s must be > 0 seconds, not {self.idle_s:g}")
        if not 0 <= self.warn_s < self.idle_s:
            raise ValueError(f"warn_s must be >= 0 and shorter than idle_s ({self.idle_s:g} s), not {self.warn_s:g}")
        if self.max_keep_hours <= 0:
            raise ValueError(f"max_keep_hours must be > 0, not {self.max_keep_hours:g}")
        return self


@dataclass
class Decision:
    action: str
    reason: str
    idle_since: float | None = None
    stop_at: float | None = None
    keep_until: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def observe(state, util: float | None, ts: float, threshold_pct: float) -> str:
    """Fold one sample into ``state`` (any object with idle_since, last_sample_ts, last_util, warned_at).
    Returns "idle_started", "idle_ended", "idle", "active" or "unknown"."""
    state.last_sample_ts, state.last_util = ts, util
    if util is None:
        was = state.idle_since is not None
        state.idle_since = None
        state.warned_at = None
        return "idle_ended" if was else "unknown"
    if util < threshold_pct:
        if state.idle_since is None:
            state.idle_since = ts
            return "idle_started"
        return "idle"
    was = state.idle_since is not None
    state.idle_since = None
    state.warned_at = None
    return "idle_ended" if was else "active"


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M UTC")


def decide(state, policy: Policy, now: float, stale_s: float) -> Decision:
    """What to do with the server now: ok, warn (with stop_at) or stop."""
    if state is None:
        return Decision(OK, "no GPU samples of this server yet")
    keep = state.keep_until
    if not policy.enabled:
        return Decision(OK, "GPU idle culling is off for this tenant", keep_until=keep)
    if state.last_sample_ts is None or now - state.last_sample_ts > stale_s:
        return Decision(OK, "no recent GPU sample (unknown is never idle)", keep_until=keep)
    if state.idle_since is None:
        return Decision(OK, f"GPU active ({state.last_util or 0:.0f}%)", keep_until=keep)
    stop_at = state.idle_since + policy.idle_s
    if keep and keep + policy.warn_s > stop_at:
        stop_at = keep + policy.warn_s
    if keep and now < keep:
        return Decision(OK, f"kept until {_at(keep)}", state.idle_since, stop_at, keep)
    if now >= stop_at:
        return Decision(STOP, f"GPU idle (< {policy.threshold_pct:g}%) since {_at(state.idle_since)}",
                        state.idle_since, stop_at, keep)
    if now >= stop_at - policy.warn_s:
        return Decision(WARN, f"GPU idle (< {policy.threshold_pct:g}%) since {_at(state.idle_since)}",
                        state.idle_since, stop_at, keep)
    return Decision(OK, "GPU idle, not for long yet", state.idle_since, stop_at, keep)


def warning_text(server_name: str, tenant: str, d: Decision) -> str:
    name = f"'{server_name}'" if server_name else "default"
    mins = int(max(0, (d.stop_at or 0) - (d.idle_since or 0)) // 60)
    return (f"Your {name} server holds a GPU that has been idle ({d.reason}); it will be stopped at "
            f"{_at(d.stop_at)} to give the GPU back (tenant {tenant} policy: {mins} min idle). "
            f"Use the GPU or choose 'keep' to keep it.")
