"""Failure classes of a notebook job, and which of them are worth a retry.

- ``cell_error``: a cell raised (cell index, execution count, exception name and message, a link to the
  cell in the output notebook). Deterministic: retried only if the job's policy asks for it.
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
            f"cell {exc.cell_index} raised {exc.ename}: {exc.evalue}",
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


def should_retry(fail: dict | None, attempt: int, max_retries: int, retry_on) -> bool:
    """Retry when the class is in the job's policy and attempts are left (attempt is 1-based)."""
    if not fail or fail.get("class") == CANCELLED:
        return False
    return attempt <= max_retries and fail.get("class") in set(retry_on or DEFAULT_RETRY_ON)
