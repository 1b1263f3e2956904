"""The price book: versions of prices with effective dates (``prices`` rows), resolved per UTC day.

A price is per hour: ``gpu`` per GPU-hour of one GPU model (``gpu_model`` '' = the default for models
without their own price), ``cpu`` per core-hour, ``memory`` per GiB-hour. A version is in force from its
``effective_from`` date (00:00 UTC) until the next version of the same (resource, model): prices change at day
boundaries, which is what lets a daily rollup be priced exactly. Versions that are in force (today or
earlier) are never changed or deleted — a new version is added instead — so a past report stays the same.
"""
from __future__ import annotations

import bisect
import datetime as _dt

from job_runner.db.accounting import Price

RESOURCES = ("gpu", "cpu", "memory")
EPOCH = _dt.date(1970, 1, 1)


def day_number(d: _dt.date) -> int:
    return (d - EPOCH).days


def day_date(day: int) -> _dt.date:
    return EPOCH + _dt.timedelta(days=day)


class PriceBook:
    """All versions in memory (a price book is small): ``price(resource, model, day)`` per hour."""

    def __init__(self, rows):
        self._v: dict[tuple, tuple[list, list]] = {}
        self.currency = None
        for r in sorted(rows, key=lambda r: r.effective_from):
            days, prices = self._v.setdefault((r.resource, r.gpu_model or ""), ([], []))
            days.append(day_number(r.effective_from))
            prices.append(float(r.unit_price))
            self.currency = self.currency or r.currency
        self.currency = self.currency or "USD"
        self._cache: dict = {}

    @classmethod
    def load(cls, s) -> "PriceBook":
        return cls(s.query(Price).all())

    def price(self, resource: str, model: str, day: int) -> float:
        key = (resource, model, day)
        got = self._cache.get(key)
        if got is None:
            got = self._find(resource, model, day)
            if got is None and model:
                got = self._find(resource, "", day)
            got = self._cache[key] = got or 0.0
        return got

    def gpu_models(self) -> list[str]:
        """The GPU models with prices of their own (every other model pays the default ('') GPU price)."""
        return sorted({m for (res, m) in self._v if res == "gpu" and m})

    def change_days(self) -> list[int]:
        """Every day on which some price changes (sorted)."""
        return sorted({d for days, _ in self._v.values() for d in days})

    def _find(self, resource, model, day):
        v = self._v.get((resource, model))
        if not v:
            return None
        i = bisect.bisect_right(v[0], day) - 1
        return v[1][i] if i >= 0 else None

    def cost(self, day: int, model: str, charged_gpu_s: float, cpu_s: float, mem_gib_s: float) -> tuple:
        """(gpu, cpu, memory) cost of one day's figures."""
        return (charged_gpu_s / 3600.0 * self.price("gpu", model, day) if charged_gpu_s else 0.0,
                cpu_s / 3600.0 * self.price("cpu", "", day) if cpu_s else 0.0,
                mem_gib_s / 3600.0 * self.price("memory", "", day) if mem_gib_s else 0.0)


def price_json(r, today: _dt.date | None = None) -> dict:
    today = today or _dt.datetime.utcnow().date()
    return {"id": r.id, "resource": r.resource, "gpu_model": r.gpu_model or None, "unit_price": r.unit_price,
            "currency": r.currency, "effective_from": r.effective_from.isoformat(), "note": r.note,
            "created_by": r.created_by, "created_at": r.created_at.isoformat() + "Z",
            "in_force_or_past": r.effective_from <= today}
