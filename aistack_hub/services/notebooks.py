"""CPU-heavy notebook work, run in the service's worker processes (``Offload.cpu``): decoding a submission
body of up to 16 MiB, nbformat validation, papermill's parameter inspection, the normalised snapshot.

Each of these holds the GIL for seconds on a large notebook (json.loads alone holds it throughout), so in a
thread it would still stall the event loop; in a process it does not. The functions take and return plain
data (bytes, str, dataclasses) and raise only ``errors`` (picklable).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import Invalid, TooLarge


@dataclass(frozen=True)
class PreparedNotebook:
    """A validated notebook: the snapshot a job stores, and what the API needs from it."""

    text: str  # nbformat.writes of the validated notebook
    kernel_name: str | None  # from its kernelspec
    name: str | None  # metadata.name
    parameters: dict  # papermill's inspection (job_runner.params.inspect_parameters)


def decode_object(body: bytes) -> dict:
    """A request body as a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(f"the body is not valid JSON: {e}", "bad_json") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    return data


def decode_submission(body: bytes) -> dict:
    """A submission body (POST jobs, jobs/inspect): its fields, with ``notebook`` replaced by the prepared one."""
    data = decode_object(body)
    if data.get("notebook") is not None:
        data["notebook"] = prepare(data["notebook"])
    return data


def prepare(nb_json) -> PreparedNotebook:
    """Validate nbformat JSON (a dict) and inspect its parameters."""
    import nbformat  # here, not at import: the service must start within JupyterHub's check

    from job_runner.params import inspect_parameters

    if not isinstance(nb_json, dict):
        raise Invalid("'notebook' must be an nbformat JSON object", "bad_notebook")
    try:
        nb = nbformat.from_dict(nb_json)
        if nb.get("nbformat") != 4:
            raise ValueError("only nbformat 4 notebooks are supported")
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds; all mean "not a notebook"
        raise Invalid(f"not a valid notebook: {str(e).splitlines()[0][:300]}", "bad_notebook") from None
    try:
        params = inspect_parameters(nb)
    except Exception as e:  # noqa: BLE001 - papermill's parser raises many kinds
        raise Invalid(f"cannot read the parameters cell: {e}", "bad_notebook") from None
    return PreparedNotebook(text=nbformat.writes(nb), kernel_name=(nb.metadata.get("kernelspec") or {}).get("name"),
                            name=nb.metadata.get("name"), parameters=params)


def prepare_file(full_path: str, shown_path: str, max_bytes: int) -> PreparedNotebook:
    """A notebook file (path submissions; the caller has checked the path is the user's)."""
    import os

    if not full_path.endswith(".ipynb") or not os.path.isfile(full_path):
        raise Invalid(f"no notebook at {shown_path!r}", "bad_path")
    if os.path.getsize(full_path) > max_bytes:
        raise TooLarge("the notebook is too large")
    with open(full_path, encoding="utf-8") as f:
        try:
            nb_json = json.load(f)
        except ValueError as e:
            raise Invalid(f"{shown_path} is not JSON: {e}", "bad_notebook") from None
    return prepare(nb_json)


def prepare_text(text: str) -> PreparedNotebook:
    """A stored snapshot (rerun)."""
    return prepare(json.loads(text))


def warm() -> bool:
    """Import what the work needs, so that the first request does not pay for it."""
    import nbformat  # noqa: F401
    import papermill  # noqa: F401

    return True


def decode_output(body: bytes) -> str:
    """An output notebook a job pod uploads (PUT pod/output), as the text to store. Not validated: a
    partial output of a failing run is still worth keeping; it must only be nbformat-shaped."""
    import nbformat

    data = decode_object(body)
    try:
        nbformat.from_dict(data)
    except Exception as e:  # noqa: BLE001
        raise Invalid(f"not a notebook: {e}", "bad_notebook") from None
    return json.dumps(data)
