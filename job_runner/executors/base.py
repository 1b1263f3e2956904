"""The executor interface between the scheduling loop (job_runner.controller) and what runs a notebook.

Contract (docs/architecture.md): ``async start(job, assignment) -> handle`` (idempotent by job id and
attempt), ``async poll(handle) -> ExecState``, ``async cancel(handle)``, ``async adopt(job) -> handle | None``
(after a restart of the service), ``async cleanup(handle)``, ``async reconcile(live)`` (periodic: stop runs
the database does not know). ``assignment`` is the core's placement (a dict); an executor binds it itself
(the local one with ``job_runner.binding.local.local_env``, Kubernetes by rendering pod resources). A handle is a JSON-able dict: the queue stores
it in the job's row so that another service process can poll or cancel the same run. The queue writes the
job's state change to the database *before* calling the executor.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from traitlets import Dict, Unicode
from traitlets.config import LoggingConfigurable

# ExecState.state values
STARTING = "starting"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass
class JobSpec:
    """What an executor needs of a job (a plain copy of the row: no database session attached)."""

    id: int
    name: str
    user: str
    tenant: str
    profile: str
    attempt: int
    notebook: str  # nbformat JSON, snapshotted at submission
    parameters: dict = field(default_factory=dict)
    kernel_name: str | None = None
    timeout_s: float | None = None
    request: dict = field(default_factory=dict)
    image: str | None = None  # the profile's image (Kubernetes)
    extra: dict = field(default_factory=dict)  # the profile's extra settings (node selectors, ...)
    namespace: str | None = None  # the tenant's Kubernetes namespace (its record's), if it names one
    notebook_path: str | None = None  # where the notebook lives in the user's home (local jobs run in its folder)

    @classmethod
    def from_row(cls, row, profile=None, tenant=None) -> "JobSpec":
        """A copy of a job row (``job_runner.db.Job``); ``profile``: the core ``Profile`` (image, extra);
        ``tenant``: the core ``Tenant`` (namespace)."""
        return cls(
            id=row.id, name=row.name, user=row.user, tenant=row.tenant, profile=row.profile, attempt=row.attempt,
            notebook=row.notebook, parameters=dict(row.parameters or {}), kernel_name=row.kernel_name,
            timeout_s=row.timeout_s, request=dict(row.request or {}),
            image=getattr(profile, "image", None), extra=dict(getattr(profile, "extra", None) or {}),
            namespace=getattr(tenant, "namespace", None), notebook_path=row.notebook_path,
        )


@dataclass
class ExecState:
    state: str  # starting | running | succeeded | failed
    progress: dict | None = None
    failure: dict | None = None  # job_runner.failures.failure(...) when state == failed
    message: str | None = None

    @property
    def final(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


class Executor(LoggingConfigurable):
    """Base class: subclasses implement the five coroutines below."""

    name = Unicode("base", help="Name of this executor (shown in the API).").tag(config=False)
    extra_env = Dict({}, help="Extra environment variables for every job run by this executor.").tag(config=True)

    # Set by the scheduling loop: call it (from any thread) when a run may have changed state, so that the
    # loop polls at once instead of at its next tick.
    notify = None

    def _notify(self):
        if self.notify is not None:
            self.notify()

    async def start(self, job: JobSpec, assignment: dict) -> dict:
        raise NotImplementedError

    async def poll(self, handle: dict) -> ExecState:
        raise NotImplementedError

    async def cancel(self, handle: dict) -> None:
        raise NotImplementedError

    async def adopt(self, job: JobSpec) -> dict | None:
        raise NotImplementedError

    async def cleanup(self, handle: dict) -> None:
        return None

    async def unavailable_nodes(self) -> set[str] | None:
        """Names of the nodes that cannot take new work now (down, unreachable, cordoned); None: this
        executor does not know (the inventory's ``healthy`` alone decides)."""
        return None

    async def reconcile(self, live: set[tuple[int, int]]) -> list[str]:
        """Stop runs of this executor whose ``(job id, attempt)`` is not in ``live`` (the attempts the
        database says are admitted or running); returns what was stopped. Called by the leader now and
        then. Default: nothing to do (a local run's process group is found through its job's row)."""
        return []

    # Read access for the API (the output notebook, partial while running; the logs).
    async def read_output(self, job: JobSpec) -> str | None:
        return None

    async def read_logs(self, job: JobSpec, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        return b"", offset
