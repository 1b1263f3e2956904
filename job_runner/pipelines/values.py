"""What a task passes on: values it reports, files it declares, and the templates that read them.

A task *reports* values by displaying a JSON object under the MIME type ``MIME`` (``report(acc=0.93)`` in
the notebook does it); they are read from its output notebook when it succeeds, and a later task's
parameter ``"{{tasks.train.outputs.parameters.acc}}"`` takes the value (a fan-out task's: the list of its
instances' values, in order). Files are paths relative to the run folder; ``{{run.dir}}`` is the run folder
relative to the owner's home (a job's ``$HOME``).
"""
from __future__ import annotations

import json
import posixpath

from .spec import TEMPLATE

MIME = "application/vnd.aistack.outputs+json"


def report(**values) -> None:
    """In a task's notebook: report ``values`` to the pipeline (JSON-able)."""
    from IPython.display import display

    display({MIME: values}, raw=True)


def reported_values(notebook_text: str, max_bytes: int = 1 << 20) -> dict:
    """The values a notebook reported (later reports win), at most ``max_bytes`` of JSON."""
    try:
        nb = json.loads(notebook_text)
    except ValueError:
        return {}
    out: dict = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) or []:
            data = (o.get("data") or {}).get(MIME) if isinstance(o, dict) else None
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError:
                    data = None
            if isinstance(data, dict):
                out.update(data)
    if len(json.dumps(out, default=str)) > max_bytes:
        raise ValueError(f"the task reported more than {max_bytes} bytes of values")
    return out


def run_folder(base: str, run_id: int) -> str:
    return posixpath.join(base, str(run_id))


def _lookup(expr: str, ctx: dict):
    if expr == "run.dir":
        return ctx["run_dir"]
    if expr == "run.id":
        return ctx["run_id"]
    if expr in ("item", "index"):
        return ctx[expr]
    _, task, _, kind, name = expr.split(".")
    got = ctx["outputs"][task]  # list of (index, {"files": {...}, "parameters": {...}}), per node in order
    vals = [o[kind].get(name) for _, o in got]
    return vals[0] if len(got) == 1 and got[0][0] is None else vals


def render(value, ctx: dict):
    """A parameter value with its templates filled in: a string that is one template whole takes the value
    as it is (a number, a list); otherwise each template is written into the string."""
    if not isinstance(value, str):
        return value
    whole = TEMPLATE.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), ctx)
    return TEMPLATE.sub(lambda m: str(_lookup(m.group(1), ctx)), value)


def output_files(files: dict, run_dir: str, item=None, index=None) -> dict:
    """Declared output files as paths relative to the home: ``run_dir/<path>`` (templates of the fan-out
    value filled in)."""
    ctx = {"run_dir": run_dir, "run_id": None, "item": item, "index": index, "outputs": {}}
    return {name: posixpath.normpath(posixpath.join(run_dir, str(render(path, ctx)))) for name, path in files.items()}
