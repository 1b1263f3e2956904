"""What a GPU sample source reports, as plain data (no GPU library types leak out of the sources).

A ``Reading`` is one look at the GPUs: a ``GPUSample`` per device (or MIG instance), a ``ProcessSample``
per process on a device (NVML), the device's workload labels where the source knows them (DCGM's pod and
namespace), XID error events, and the source's own errors (a source that cannot read says why).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class GPUSample:
    node: str
    gpu: str  # "0", "1", ... (device index) or "0/mig-3g.40gb/1" for a MIG instance
    util_pct: float | None = None  # SM / graphics utilisation 0..100 (NVML utilization.gpu, DCGM_FI_DEV_GPU_UTIL)
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    engine_active: float | None = None  # 0..1, DCGM_FI_PROF_GR_ENGINE_ACTIVE (more honest than GPU_UTIL)
    model: str = ""
    uuid: str = ""
    # what the source says runs there (DCGM with pod mapping): namespace, pod, container
    pod: str = ""
    namespace: str = ""

    @property
    def activity_pct(self) -> float | None:
        """The activity culling judges: graphics-engine activity where known (DCGM profiling), else util."""
        if self.engine_active is not None:
            return 100.0 * self.engine_active
        return self.util_pct


@dataclass
class ProcessSample:
    node: str
    gpu: str
    pid: int
    util_pct: float | None = None  # NVML per-process SM utilisation over the last interval
    mem_used_mib: float | None = None


@dataclass
class XIDEvent:
    node: str
    gpu: str
    xid: int
    ts: float = field(default_factory=time.time)


@dataclass
class Reading:
    ts: float = field(default_factory=time.time)
    gpus: list[GPUSample] = field(default_factory=list)
    processes: list[ProcessSample] = field(default_factory=list)
    xids: list[XIDEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class WorkloadSample:
    """One workload's GPU use at ``ts``: key ``alloc:<id>`` (a server) or ``job:<id>``."""

    ts: float
    workload: str
    tenant: str = ""
    user: str = ""
    util_pct: float | None = None
    mem_used_mib: float | None = None
    gpus: tuple = ()


class SampleSource:
    """A source of ``Reading``s. ``read()`` never raises for a GPU that misbehaves: it reports it in
    ``Reading.errors``; it raises ``SourceUnavailable`` when it cannot read at all (no NVML, no exporter)."""

    name = "source"

    def read(self) -> Reading:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self):
        pass


class SourceUnavailable(RuntimeError):
    """The source cannot read anything here (e.g. "no NVML: libnvidia-ml.so.1 not found")."""
