"""Failure classes of a notebook job, and which of them are worth a retry.

- ``cell_error``: a cell raised (the cell as JupyterLab shows it to the user, ``In [3]``: the 3rd code cell of
  *their* notebook; the cell's index in the output notebook, which papermill's injected cells shift; exception
  name and message; a link to the cell in the output notebook). Deterministic: retried only if the job's
  policy asks for it.
- ``kernel_died``: the kernel process died (most often the OOM killer). May succeed on a retry.
- ``timeout``: the job ran past its timeout. Retried only if asked.
- ``cancelled``: a user cancelled it. Never retried.
- ``infrastructure``: the runner or the service lost the job (node/process killed, start failed).
  Retried by default.
"""
from __future__ import annotations

CELL_ERROR = "cell_error"
KERNEL_DIED = "kernel_died"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
INFRASTRUCTURE = "infrastructure"
FAILURE_CLASSES = (CELL_ERROR, KERNEL_DIED, TIMEOUT, CANCELLED, INFRASTRUCTURE)

# What a job retries when its submission does not say (`retry_on`).
DEFAULT_RETRY_ON = (KERNEL_DIED, INFRASTRUCTURE)


def failure(kind: str, message: str, **details) -> dict:
    assert kind in FAILURE_CLASSES, kind
    out = {"class": kind, "message": message}
    out.update({k: v for k, v in details.items() if v is not None})
    return out


def classify_exception(exc: BaseException, output_link: str | None = None) -> dict:
    """Turn an exception raised by papermill/nbclient into a failure dict."""
    from papermill.exceptions import PapermillExecutionError

    try:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
    except ImportError:  # pragma: no cover
        CellTimeoutError = DeadKernelError = ()

    if isinstance(exc, PapermillExecutionError):
        link = f"{output_link}#cell={exc.cell_index}" if output_link else None
        return failure(
            CELL_ERROR,
            # named by locate_cell_error once the output notebook is read (the index here counts papermill's
            # injected cells, not the user's)
            f"a cell raised {exc.ename}: {exc.evalue}",
            cell_index=exc.cell_index,
            execution_count=exc.exec_count,
            ename=exc.ename,
            evalue=exc.evalue,
            link=link,
        )
    if isinstance(exc, DeadKernelError) or "Kernel died" in str(exc) or "kernel died" in str(exc):
        return failure(KERNEL_DIED, f"the kernel died (out of memory?): {exc}".strip())
    if isinstance(exc, CellTimeoutError):
        return failure(TIMEOUT, f"a cell timed out: {exc}".splitlines()[0])
    return failure(INFRASTRUCTURE, f"{type(exc).__name__}: {exc}".splitlines()[0][:500])


# Cells papermill adds to the output notebook, by their tags: the injected parameters (a code cell, executed)
# and the error banners (markdown, one at the top and one right before the failed cell). None is the user's,
# so none counts when naming the user's cell.
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _added_by_papermill(cell: dict) -> bool:
    return bool(set((cell.get("metadata") or {}).get("tags") or ()) & _PAPERMILL_TAGS)


def locate_cell_error(fail: dict, nb: dict, link: str | None = None) -> dict:
    """Name the cell that raised as the user knows it, from the output notebook ``nb``.

    ``code_cell`` is the cell's place among the user's code cells (1-based): what JupyterLab shows as
    ``In [n]`` after running the notebook from the top, the label the message uses; ``input_cell_index``
    is its index in the user's own notebook; ``cell_index`` (and ``link``) point into the output notebook,
    where papermill's added cells shift it (the Jobs panel opens the output there)."""
    if fail.get("class") != CELL_ERROR:
        return fail
    code, added = 0, 0
    for i, cell in enumerate(nb.get("cells", [])):
        if _added_by_papermill(cell):
            added += 1
            continue
        if cell.get("cell_type") == "code":
            code += 1
        if (cell.get("metadata", {}).get("papermill") or {}).get("exception"):
            label = f"In [{code}]"
            fail.update(cell_index=i, input_cell_index=i - added, code_cell=code, cell_label=label,
                        message=f"{label} raised {fail.get('ename')}: {fail.get('evalue')}")
            if cell.get("id"):
                fail["cell_id"] = cell["id"]
            if link:
                fail["link"] = f"{link}#cell={i}"
            break
    return fail


# The platform lost the run, the user's code did nothing wrong: its pod was deleted by someone other than
# the service or evicted (a drain), or its node went away (executors/k8s_status.py names these reasons).
LOST_RUN_REASONS = ("PodDeleted", "Evicted", "NodeLost")


def is_lost_run(fail: dict | None) -> bool:
    return bool(fail) and fail.get("class") == INFRASTRUCTURE and fail.get("reason") in LOST_RUN_REASONS


def should_retry(fail: dict | None, attempt: int, max_retries: int, retry_on, lost_run_restarts: int = 0) -> bool:
    """Retry when the class is in the job's policy and attempts are left (attempt is 1-based), or when the
    platform lost the run and the platform's own restart budget (``Controller.lost_run_restarts``) is left."""
    if not fail or fail.get("class") == CANCELLED:
        return False
    if is_lost_run(fail) and attempt <= lost_run_restarts:
        return True
    return attempt <= max_retries and fail.get("class") in set(retry_on or DEFAULT_RETRY_ON)
