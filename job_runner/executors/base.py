"""The executor interface between the scheduling loop (job_runner.queue) and what runs a notebook.

Contract (docs/architecture.md): ``async start(job, assignment) -> handle`` (idempotent by job id and
attempt), ``async poll(handle) -> ExecState``, ``async cancel(handle)``, ``async adopt(job) -> handle | None``
(after a restart of the service), ``async cleanup(handle)``. A handle is a JSON-able dict: the queue stores
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
    cwd: str | None = None
    timeout_s: float | None = None
    request: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # the slice's environment (slice_env) and AISTACK_* variables
    image: str | None = None  # the profile's image (Kubernetes)
    extra: dict = field(default_factory=dict)  # the profile's extra settings (node selectors, ...)


@dataclass
class ExecState:
    state: str  # starting | running | succeeded | failed
    progress: dict | None = None
    failure: dict | None = None  # job_runner.failures.failure(...) when state == failed
    message: str | None = None

    @property
    def final(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


def slice_env(assignment: dict | None, request: dict | None) -> dict[str, str]:
    """The environment that confines a process to its GPU slice.

    ``CUDA_VISIBLE_DEVICES`` lists the assigned GPUs (none: empty, so CUDA sees no device). A "share"
    slice also gets MPS limits: ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` (gpu_milli/10) and, with a memory
    cap, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` ("<index>=<MiB>M" per GPU). A MIG slice names its instance
    in ``AISTACK_MIG_PROFILE``/``AISTACK_MIG_SLOT`` (the device UUID needs NVML on the node).
    """
    assignment = assignment or {}
    request = request or {}
    gpus = [int(i) for i in assignment.get("gpu_indices") or []]
    env = {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpus), "AISTACK_NODE": str(assignment.get("node") or "")}
    kind = request.get("kind")
    milli = assignment.get("gpu_milli") or request.get("gpu_milli") or 0
    if kind == "share" and gpus:
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, min(100, round(int(milli) / 10))))
        mem = request.get("gpu_mem_mib")
        if mem:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(f"{i}={int(mem)}M" for i in gpus)
    mig = assignment.get("mig")
    if mig:
        gpu_index, profile, slot = mig
        env["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
        env["AISTACK_MIG_PROFILE"] = str(profile)
        env["AISTACK_MIG_SLOT"] = str(slot)
    env["AISTACK_GPU_MILLI"] = str(int(milli))
    return env


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

    # Read access for the API (the output notebook, partial while running; the logs).
    async def read_output(self, job: JobSpec) -> str | None:
        return None

    async def read_logs(self, job: JobSpec, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
        return b"", offset
