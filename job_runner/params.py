"""Notebook parameters: read with papermill's inspection, validate submitted values against them.

papermill reads the cell tagged ``parameters`` (names, annotated types, defaults, trailing comments).
When a parameter has no annotation, its type is taken from its default literal (``a = 1`` is an int),
so that ``{"a": "ten"}`` is refused at submission (HTTP 400) instead of failing at run time.
"""
from __future__ import annotations

import ast
import itertools
import json
import os
import re
import tempfile

# nbformat/papermill are imported where used: they cost seconds at import, and the service must
# answer JupyterHub within its start-up check.

MAX_SWEEP_JOBS = 256


class ParameterError(ValueError):
    """A submitted parameter does not fit the notebook (unknown name, wrong type, bad sweep)."""


_TYPES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "tuple": (list,),
    "dict": (dict,),
    "None": None,  # any
}


def inspect_parameters(nb: "nbformat.NotebookNode") -> dict[str, dict]:
    """The notebook's parameters: {name: {name, type, inferred_type_name, default, help}}."""
    import nbformat
    import papermill

    with tempfile.TemporaryDirectory(prefix="aistack-inspect-") as tmp:
        path = os.path.join(tmp, "notebook.ipynb")
        nbformat.write(nb, path)
        raw = papermill.inspect_notebook(path)
    params = {}
    for name, p in raw.items():
        type_name = _effective_type(p.get("inferred_type_name") or "None", p.get("default"))
        params[name] = {
            "name": name,
            "type": type_name,
            "inferred_type_name": p.get("inferred_type_name"),
            "default": p.get("default"),
            "help": p.get("help") or "",
        }
    return params


def _effective_type(annotated: str, default: str | None) -> str:
    """The type to validate against: the annotation, else the type of the default literal."""
    m = re.fullmatch(r"Optional\[(\w+)\]", annotated)
    if m:
        return "Optional[" + (m.group(1) if m.group(1) in _TYPES else "None") + "]"
    if annotated in _TYPES and annotated != "None":
        return annotated
    if annotated != "None":
        return "None"  # an annotation we do not model (e.g. a class): accept any JSON value
    try:
        value = ast.literal_eval(default) if default is not None else None
    except (ValueError, SyntaxError):
        return "None"
    for name in ("bool", "int", "float", "str", "list", "dict"):
        if type(value) is _TYPES[name][-1]:
            return name
    if isinstance(value, tuple):
        return "list"
    return "None"


def _check(name: str, type_name: str, value) -> None:
    optional = type_name.startswith("Optional[")
    if optional:
        if value is None:
            return
        type_name = type_name[len("Optional["):-1]
    allowed = _TYPES.get(type_name)
    if allowed is None:
        return
    # bool is an int in Python: refuse True for an int parameter and 1 for a bool one.
    ok = isinstance(value, allowed) and not (type_name != "bool" and isinstance(value, bool))
    if not ok:
        raise ParameterError(
            f"parameter {name!r} must be {type_name}, got {type(value).__name__} {json.dumps(value)[:80]}"
        )


def validate_parameters(declared: dict[str, dict], values: dict) -> dict:
    """Check submitted values against the declared parameters; returns the values (coerced int->float)."""
    if not isinstance(values, dict):
        raise ParameterError("parameters must be a JSON object")
    if values and not declared:
        raise ParameterError("the notebook has no cell tagged 'parameters', so it takes no parameters")
    out = {}
    for name, value in values.items():
        if name not in declared:
            raise ParameterError(f"unknown parameter {name!r}; the notebook declares: {', '.join(sorted(declared)) or 'none'}")
        type_name = declared[name]["type"]
        _check(name, type_name, value)
        if type_name in ("float", "Optional[float]") and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def expand_sweep(declared: dict[str, dict], base: dict, sweep: dict) -> list[dict]:
    """A grid: {name: [values...]} -> one parameter dict per combination (validated)."""
    if not isinstance(sweep, dict) or not sweep:
        raise ParameterError("sweep must be a non-empty object of parameter name -> list of values")
    names = list(sweep)
    for name in names:
        if not isinstance(sweep[name], list) or not sweep[name]:
            raise ParameterError(f"sweep values of {name!r} must be a non-empty list")
    total = 1
    for name in names:
        total *= len(sweep[name])
    if total > MAX_SWEEP_JOBS:
        raise ParameterError(f"the sweep makes {total} jobs; at most {MAX_SWEEP_JOBS}")
    combos = []
    for values in itertools.product(*(sweep[n] for n in names)):
        p = dict(base)
        p.update(dict(zip(names, values)))
        combos.append(validate_parameters(declared, p))
    return combos
