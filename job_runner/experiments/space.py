"""The search space of an experiment: checked against the notebook's parameters, turned into Optuna
distributions (and the grid, for the grid sampler).

A space maps a notebook parameter to a list of values or a range ``{"low", "high", "log": bool, "type":
"float"|"int", "step"?}``. ``SpaceError`` says what is wrong (an unknown name, an empty list, an inverted or
empty range, a log range through 0, a grid over a continuous range without a step).
"""
from __future__ import annotations

import itertools
import math

import optuna.distributions as od


class SpaceError(ValueError):
    pass


def _number(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpaceError(f"{what} must be a finite number, not {v!r}")
    return v


def distributions(space: dict, known: set | None = None, budget_param: str | None = None) -> dict:
    """``{name: optuna distribution}``; ``known``: the notebook's parameter names (None: not checked)."""
    if not isinstance(space, dict) or not space:
        raise SpaceError("'space' must be a non-empty object {parameter: [values] | {low, high, ...}}")
    out = {}
    for name, spec in space.items():
        if known is not None and name not in known:
            raise SpaceError(f"unknown parameter {name!r}: the notebook's parameters cell has "
                             f"{', '.join(sorted(known)) or 'none'}")
        if name == budget_param:
            raise SpaceError(f"{name!r} is the budget parameter: it is set by the experiment, not searched")
        if isinstance(spec, list):
            if not spec:
                raise SpaceError(f"parameter {name!r}: the list of values is empty")
            for v in spec:
                if not (v is None or isinstance(v, (bool, int, float, str))):
                    raise SpaceError(f"parameter {name!r}: values must be numbers, strings, booleans or null")
            if len(set(map(repr, spec))) != len(spec):
                raise SpaceError(f"parameter {name!r}: the list repeats a value")
            out[name] = od.CategoricalDistribution(spec)
            continue
        if not isinstance(spec, dict) or "low" not in spec or "high" not in spec:
            raise SpaceError(f"parameter {name!r}: give a list of values or a range {{\"low\", \"high\"}}")
        extra = set(spec) - {"low", "high", "log", "type", "step"}
        if extra:
            raise SpaceError(f"parameter {name!r}: unknown range keys {', '.join(sorted(extra))}")
        kind = spec.get("type") or ("int" if all(isinstance(spec[k], int) for k in ("low", "high")) else "float")
        if kind not in ("int", "float"):
            raise SpaceError(f"parameter {name!r}: 'type' is 'int' or 'float'")
        low, high = _number(spec["low"], f"{name}.low"), _number(spec["high"], f"{name}.high")
        log, step = bool(spec.get("log", False)), spec.get("step")
        if low > high:
            raise SpaceError(f"parameter {name!r}: the range is inverted (low {low} > high {high})")
        if low == high:
            raise SpaceError(f"parameter {name!r}: the range is empty (low = high = {low}); use a list of one value")
        if log and low <= 0:
            raise SpaceError(f"parameter {name!r}: a log range needs low > 0")
        if step is not None:
            _number(step, f"{name}.step")
            if step <= 0 or log:
                raise SpaceError(f"parameter {name!r}: 'step' must be > 0 and is not allowed with 'log'")
        if kind == "int":
            if int(low) != low or int(high) != high:
                raise SpaceError(f"parameter {name!r}: an int range needs integer bounds")
            out[name] = od.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        else:
            out[name] = od.FloatDistribution(float(low), float(high), log=log, step=step)
    return out


def grid(dists: dict) -> dict:
    """``{name: [values]}`` of a finite space (lists, int ranges, stepped float ranges), else SpaceError."""
    out = {}
    for name, d in dists.items():
        if isinstance(d, od.CategoricalDistribution):
            out[name] = list(d.choices)
        elif isinstance(d, od.IntDistribution) and not d.log:
            out[name] = list(range(d.low, d.high + 1, d.step))
        elif isinstance(d, od.FloatDistribution) and d.step:
            n = int(round((d.high - d.low) / d.step))
            out[name] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
        else:
            raise SpaceError(f"parameter {name!r}: a grid needs values, an int range or a float range with 'step'")
    return out


def grid_size(g: dict) -> int:
    return math.prod(len(v) for v in g.values())


def grid_points(g: dict) -> list[dict]:
    names = sorted(g)
    return [dict(zip(names, combo)) for combo in itertools.product(*(g[n] for n in names))]


def check_values(dists: dict, params: dict, known: set | None = None) -> dict:
    """Parameters given for a trial (POST trials): names in the space (or the notebook), values inside."""
    if not isinstance(params, dict) or not params:
        raise SpaceError("'parameters' must be a non-empty object")
    out = {}
    for name, v in params.items():
        d = dists.get(name)
        if d is None:
            if known is not None and name in known:
                out[name] = v
                continue
            raise SpaceError(f"unknown parameter {name!r}")
        if isinstance(d, od.CategoricalDistribution):
            if v not in d.choices:
                raise SpaceError(f"parameter {name!r}: {v!r} is not one of {list(d.choices)}")
        else:
            _number(v, name)
            if not d.low <= v <= d.high:
                raise SpaceError(f"parameter {name!r}: {v} is outside [{d.low}, {d.high}]")
            v = int(v) if isinstance(d, od.IntDistribution) else float(v)
        out[name] = v
    missing = set(dists) - set(out)
    if missing:
        raise SpaceError(f"missing parameters: {', '.join(sorted(missing))}")
    return out
