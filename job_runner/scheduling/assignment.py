"""Where a workload was placed."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assignment:
    """A placement: ``node`` name, the GPUs used, milli-GPU per GPU, and for MIG
    ``mig = (gpu_index, profile, start_slot)``. ``gpu_mem_mib`` is the GPU-memory cap reserved (shares)."""

    node: str
    gpu_indices: tuple[int, ...] = ()
    gpu_milli: int = 0
    mig: tuple[int, str, int] | None = None
    gpu_mem_mib: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "gpu_indices", tuple(int(i) for i in self.gpu_indices))
        if self.mig is not None:
            object.__setattr__(self, "mig", (int(self.mig[0]), str(self.mig[1]), int(self.mig[2])))

    def to_dict(self) -> dict:
        return {"node": self.node, "gpu_indices": list(self.gpu_indices), "gpu_milli": self.gpu_milli,
                "mig": list(self.mig) if self.mig else None, "gpu_mem_mib": self.gpu_mem_mib}

    @classmethod
    def from_dict(cls, d: dict) -> "Assignment":
        return cls(d["node"], tuple(d.get("gpu_indices") or ()), int(d.get("gpu_milli") or 0),
                   tuple(d["mig"]) if d.get("mig") else None, d.get("gpu_mem_mib"))
