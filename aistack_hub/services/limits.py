"""The API's limits: each one a trait (YAML section ``Limits:``), each refusal a 4xx with a message that
names the limit and the figure sent (docs/limits.md lists them all).

The body size itself is ``AIStackService.max_body_bytes`` (tornado's HTTP server enforces it before a
handler runs); everything else is here, read by the service layer through ``ServiceContext.limits``.
"""
from __future__ import annotations

from traitlets import Float, Integer
from traitlets.config import Configurable

MIB = 1024 * 1024


def mib(n: int) -> str:
    """A byte count as people read it in a message ("3.2 MiB")."""
    return f"{n / MIB:.1f} MiB" if n >= MIB // 10 else f"{n} bytes"


class Limits(Configurable):
    """Sizes, counts and times the API bounds (docs/limits.md)."""

    max_notebook_bytes = Integer(
        16 * MIB, help="Largest notebook a job may be submitted with (its JSON, bytes): the content sent, or "
        "the file of a path submission. Larger: 413.").tag(config=True)
    max_parameters_bytes = Integer(
        64 * 1024, help="Largest 'parameters' of one job, and largest 'sweep' grid, as JSON (bytes). Larger: "
        "413. Parameters are stored per job (a sweep row each), so this bounds what a sweep stores besides "
        "its one notebook.").tag(config=True)
    max_sweep_jobs = Integer(256, help="Most jobs one sweep may make (the product of the grid's value "
                             "counts). More: 400.").tag(config=True)
    default_page_size = Integer(50, help="Items a list (GET jobs) answers when 'limit' is not given.").tag(config=True)
    max_page_size = Integer(500, help="Most items a list (GET jobs) answers per page; 'limit' above it: 400. "
                            "The answer's 'next' links the following page.").tag(config=True)
    max_output_bytes = Integer(
        32 * MIB, help="Largest output notebook GET jobs/{id}/output serves whole; a larger one is answered "
        "413 (\"output too large\") unless asked in ranges (a Range header, or ?offset=&length=), each at most "
        "this long.").tag(config=True)
    max_log_bytes = Integer(
        64 * MIB, help="Largest log a job pod may send (its cells' output and the runner's lines, kept in the "
        "run-file store: the folder or the database). Past it the log ends with a line saying it was cut; the "
        "job goes on. 0: no limit.").tag(config=True)
    max_log_followers_per_user = Integer(
        8, help="Log streams (GET jobs/{id}/logs?follow=1) one user may hold open at once; one more: 429. "
        "0: no following at all (poll with ?offset= instead).").tag(config=True)
    max_log_follow_s = Float(6 * 3600, help="A followed log stream ends after this long (the client may "
                             "follow again from its offset).").tag(config=True)
    auth_cache_s = Float(
        0.0, help="Seconds a checked JupyterHub token (its user, admin flag and groups) is trusted without asking "
        "the hub again. 0: every request asks the hub, so a revoked token or a removed membership is refused on "
        "the next request; N: within N seconds.").tag(config=True)
