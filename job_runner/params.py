"""Notebook parameters: read with papermill's inspection, validate submitted values against them.

papermill reads the cell tagged ``parameters`` (names, annotated types, defaults, trailing comments); for
Python notebooks the same parser runs here without importing papermill.
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

MAX_SWEEP_JOBS = 256  # the default of aistack_hub's Limits.max_sweep_jobs


class ParameterError(ValueError):
    """A submitted parameter does not fit the notebook (unknown name, wrong type, bad sweep)."""


class SweepTooLarge(ParameterError):
    """A sweep makes more jobs than allowed."""


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


# papermill's PythonTranslator.PARAMETER_PATTERN (papermill 2.x), so that the parameters read here are the
# ones papermill will inject at run time.
_PARAMETER_PATTERN = re.compile(
    r"^(?P<target>\w[\w_]*)\s*(:\s*[\"']?(?P<annotation>\w[\w_\[\],\s]*)[\"']?\s*)?=\s*(?P<value>.*?)"
    r"(\s*#\s*(type:\s*(?P<type_comment>[^\s]*)\s*)?(?P<help>.*))?$"
)
# Kernels and languages papermill parses with its Python translator.
_PYTHON = ("python", "pysparkkernel")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _python_parameters(source: str) -> list[tuple[str, str, str, str]]:
    """(name, annotation, default, help) of each assignment in a parameters cell, as papermill's
    PythonTranslator.inspect reads them (multi-line values are joined; a line with two '=' is skipped)."""

    def flatten(acc: list[str]) -> str:
        flat = "".join(line[:line.index("#")].strip() if "#" in line else line.strip() for line in acc[:-1])
        return flat + (acc[-1].strip() if acc else "")

    groups, acc = [], []
    for line in source.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        n = line.count("=")
        if n > 0:
            groups.append(flatten(acc))
            acc = []
            if n > 1:
                continue
        acc.append(line)
    groups.append(flatten(acc))
    out = []
    for definition in groups:
        m = _PARAMETER_PATTERN.match(definition) if definition else None
        if m is None or m.group("target") is None:
            continue
        out.append((m.group("target").strip(), str(m.group("annotation") or m.group("type_comment") or None).strip(),
                    str(m.group("value")).strip(), str(m.group("help") or "").strip()))
    return out


def inspect_parameters(nb) -> dict[str, dict]:
    """The notebook's parameters: {name: {name, type, inferred_type_name, default, help}}.

    ``nb``: an nbformat notebook (or its dict). Python notebooks are read here, in-process and in
    microseconds (papermill's own parser, above); other languages go to papermill, whose import alone takes
    seconds (it was what made the first "Run as job" after a start wait)."""
    cells = nb.get("cells") or []
    cell = next((c for c in cells if "parameters" in ((c.get("metadata") or {}).get("tags") or [])), None)
    if cell is None:
        return {}
    meta = nb.get("metadata") or {}
    kernel = (meta.get("kernelspec") or {}).get("name")
    language = (meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language")
    if not kernel:
        raise ValueError("No kernel name found in notebook and no override provided.")
    if kernel in _PYTHON or (kernel not in _OTHER_KERNELS and language in _PYTHON):
        raw = _python_parameters(_source(cell))
    else:
        raw = _papermill_parameters(nb)
    params = {}
    for name, annotated, default, help_ in raw:
        params[name] = {
            "name": name,
            "type": _effective_type(annotated or "None", default),
            "inferred_type_name": annotated,
            "default": default,
            "help": help_ or "",
        }
    return params


# kernel names papermill maps to a translator of another language, whatever the notebook's language says
_OTHER_KERNELS = ("R", "scala", "julia", "matlab", ".net-csharp", ".net-fsharp", ".net-powershell", "sparkkernel",
                  "sparkrkernel", "bash")


def _papermill_parameters(nb) -> list[tuple[str, str, str, str]]:
    import nbformat
    import papermill

    with tempfile.TemporaryDirectory(prefix="aistack-inspect-") as tmp:
        path = os.path.join(tmp, "notebook.ipynb")
        nbformat.write(nbformat.from_dict(nb), path)
        raw = papermill.inspect_notebook(path)
    return [(name, p.get("inferred_type_name") or "None", p.get("default"), p.get("help") or "")
            for name, p in raw.items()]


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


def expand_sweep(declared: dict[str, dict], base: dict, sweep: dict, max_jobs: int = MAX_SWEEP_JOBS) -> list[dict]:
    """A grid: {name: [values...]} -> one parameter dict per combination (validated), at most ``max_jobs``."""
    if not isinstance(sweep, dict) or not sweep:
        raise ParameterError("sweep must be a non-empty object of parameter name -> list of values")
    names = list(sweep)
    for name in names:
        if not isinstance(sweep[name], list) or not sweep[name]:
            raise ParameterError(f"sweep values of {name!r} must be a non-empty list")
    total = 1
    for name in names:
        total *= len(sweep[name])
    if total > max_jobs:
        raise SweepTooLarge(f"the sweep makes {total} jobs; at most {max_jobs} (Limits.max_sweep_jobs)")
    combos = []
    for values in itertools.product(*(sweep[n] for n in names)):
        p = dict(base)
        p.update(dict(zip(names, values)))
        combos.append(validate_parameters(declared, p))
    return combos
