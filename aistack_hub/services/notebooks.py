"""CPU-heavy notebook work, run in the service's worker processes (``Offload.cpu``): decoding a submission
body of up to 16 MiB, nbformat validation, the parameter inspection, the normalised snapshot. Small bodies
(``Offload.cpu_small``) are done in the service's threads instead: a few milliseconds, and no wait for a
worker that is still starting (the first "Run as job" after a start).

Each of these holds the GIL for seconds on a large notebook (json.loads alone holds it throughout), so in a
thread it would still stall the event loop; in a process it does not. The functions take and return plain
data (bytes, str, dataclasses) and raise only ``errors`` (picklable).
"""
from __future__ import annotations

import errno
import json
import re
import sys
from dataclasses import dataclass

from .errors import Invalid, TooLarge
from .limits import MIB, mib


def _nbformat():
    """nbformat, imported without ``rfc3987_syntax``.

    jsonschema (which nbformat imports) registers an "iri" format checker when ``rfc3987_syntax`` is
    installed, and importing that builds a grammar: 3 s of CPU, 10 s on a busy machine, most of what the
    first "Run as job" after a start waited for. Notebook schemas use no formats and nbformat checks none,
    so nbformat is imported with that one module hidden; it is importable again right after, for anyone
    else in the process."""
    if "nbformat" in sys.modules:  # imported, or being imported by another thread: the import waits for it
        import nbformat

        return nbformat
    hide = "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # an ImportError for jsonschema, which does without it
    try:
        import nbformat
    finally:
        if hide and sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
    return nbformat


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
    except RecursionError:  # json.loads recurses per nesting level: 100,000 '[' exhaust the stack
        raise Invalid("the body's JSON is nested too deeply", "bad_json") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    # JSON may spell a lone UTF-16 surrogate ("\ud800"): Python keeps it in the str, and the first encode
    # (the database, a file, the response) fails far from here. Only a body with such an escape is walked.
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(data):
        raise Invalid("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff): not text", "bad_json")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def decode_submission(body: bytes, max_notebook_bytes: int = 16 * MIB) -> dict:
    """A submission body (POST jobs, jobs/inspect): its fields, with ``notebook`` replaced by the prepared one."""
    data = decode_object(body)
    if data.get("notebook") is not None:
        data["notebook"] = prepare(data["notebook"], max_notebook_bytes)
    return data


def prepare(nb_json, max_bytes: int = 16 * MIB) -> PreparedNotebook:
    """Validate nbformat JSON (a dict) and inspect its parameters (no papermill for Python notebooks:
    ``job_runner.params``)."""
    from job_runner.params import inspect_parameters

    nbformat = _nbformat()  # here, not at import: the service must start within JupyterHub's check

    if not isinstance(nb_json, dict):
        raise Invalid("'notebook' must be an nbformat JSON object", "bad_notebook")
    try:
        nb = nbformat.from_dict(nb_json)
        if nb.get("nbformat") != 4:
            raise ValueError("only nbformat 4 notebooks are supported")
        nbformat.validate(nb)
        text = nbformat.writes(nb)
    except RecursionError:
        raise Invalid("not a valid notebook: nested too deeply", "bad_notebook") from None
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds; all mean "not a notebook"
        raise Invalid(f"not a valid notebook: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}",
                      "bad_notebook") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TooLarge(f"the notebook is too large ({mib(size)} > {mib(max_bytes)}, Limits.max_notebook_bytes)",
                       "notebook_too_large")
    try:
        params = inspect_parameters(nb)
    except Exception as e:  # noqa: BLE001 - a parameters cell papermill cannot read
        raise Invalid(f"cannot read the parameters cell: {e}", "bad_notebook") from None
    meta = nb.metadata
    kernel = (meta.get("kernelspec") or {}).get("name")
    name = meta.get("name")
    # metadata is free-form: a non-string name or kernel name is not ours to trust (it was a 500)
    return PreparedNotebook(text=text, kernel_name=kernel if isinstance(kernel, str) else None,
                            name=name if isinstance(name, str) else None, parameters=params)


def prepare_file(root: str, rel: str, max_bytes: int) -> PreparedNotebook:
    """The notebook at ``rel`` under ``root`` (path submissions; ``root``: the user's home, a real path).

    Opened once, then checked: the check is on the opened file itself, so that a path swapped for a symlink
    between a check and the open cannot make the service read another file. The last component must not be
    a symlink (O_NOFOLLOW); what was opened must be a regular file whose real path (the kernel's, through
    /proc/self/fd) is inside ``root``; its size is the fstat's."""
    import os
    import stat

    shown = rel
    if not rel.endswith(".ipynb"):
        raise Invalid(f"no notebook at {shown!r} (a path must name an .ipynb file)", "bad_path")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(os.path.join(root, rel), flags)
    except OSError as e:
        why = "a symlink (not followed)" if e.errno == errno.ELOOP else (e.strerror or "cannot open").lower()
        raise Invalid(f"no notebook at {shown!r}: {why}", "bad_path") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Invalid(f"no notebook at {shown!r}: not a regular file", "bad_path")
        if not _inside(fd, st, os.path.join(root, rel), root):
            raise Invalid("the path must stay inside your home directory", "bad_path")
        if st.st_size > max_bytes:
            raise TooLarge(f"the notebook is too large ({mib(st.st_size)} > {mib(max_bytes)}, "
                           "Limits.max_notebook_bytes)", "notebook_too_large")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew since the fstat
        raise TooLarge(f"the notebook is too large (> {mib(max_bytes)}, Limits.max_notebook_bytes)",
                       "notebook_too_large")
    try:
        nb_json = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(f"{shown} is not JSON: {e}", "bad_notebook") from None
    except RecursionError:
        raise Invalid(f"{shown} is nested too deeply", "bad_notebook") from None
    return prepare(nb_json, max_bytes)


def _inside(fd: int, st, path: str, root: str) -> bool:
    """Whether the file open at ``fd`` lies inside ``root`` (by the opened file, not by the path)."""
    import os

    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: the path's real location, and it must be the very file that is open
        real = os.path.realpath(path)
        try:
            same = os.stat(real)
        except OSError:
            return False
        if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
            return False
    return real.startswith(root.rstrip(os.sep) + os.sep)


def prepare_text(text: str) -> PreparedNotebook:
    """A stored snapshot (rerun)."""
    return prepare(json.loads(text), max(16 * MIB, len(text) * 4))


def preload() -> None:
    """Import what the small requests need in this process (nbformat, the parameters parser)."""
    _nbformat()
    import job_runner.params  # noqa: F401


def warm() -> bool:
    """Import and compile what the work needs (nbformat and its schema), so that the first request does not
    pay for it. Python notebooks need no papermill here (job_runner.params)."""
    nbformat = _nbformat()

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}))
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    prepare(json.loads(nbformat.writes(nb)))
    return True


def decode_output(body: bytes) -> str:
    """An output notebook a job pod uploads (PUT pod/output), as the text to store. Not validated: a
    partial output of a failing run is still worth keeping; it must only be nbformat-shaped."""
    nbformat = _nbformat()

    data = decode_object(body)
    try:
        nbformat.from_dict(data)
    except Exception as e:  # noqa: BLE001
        raise Invalid(f"not a notebook: {e}", "bad_notebook") from None
    return json.dumps(data)
