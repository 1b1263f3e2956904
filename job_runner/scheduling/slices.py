"""What a workload asks for (a slice request) and what it is charged against quota."""
from __future__ import annotations

from dataclasses import dataclass

from .models import gpu_model

SLICE_KINDS = ("cpu", "whole", "share", "mig")
SHARING_MODES = ("time-slice", "mps", "hami")
MAX_GPUS_PER_REQUEST = 8


@dataclass(frozen=True)
class Resources:
    """An amount of the three quota'd resources."""

    gpu_milli: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(
            self.gpu_milli + other.gpu_milli, self.cpu_milli + other.cpu_milli, self.memory_mib + other.memory_mib
        )

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources(
            self.gpu_milli - other.gpu_milli, self.cpu_milli - other.cpu_milli, self.memory_mib - other.memory_mib
        )

    def to_dict(self) -> dict:
        return {"gpu_milli": self.gpu_milli, "cpu_milli": self.cpu_milli, "memory_mib": self.memory_mib}


@dataclass(frozen=True)
class SliceRequest:
    """A request for a slice of the GPU pool.

    ``kind``: ``cpu`` (no GPU), ``whole`` (``gpus`` whole GPUs, 1..8, on one node), ``share``
    (``gpu_milli`` of one GPU, 1..999 or 1000, optionally capped at ``gpu_mem_mib`` of GPU memory,
    shared by ``sharing``), ``mig`` (a MIG instance ``mig_profile`` such as ``3g.40gb``).
    ``gpu_models`` restricts the GPU models (empty = any), like the trace's ``gpu_spec``.
    """

    kind: str
    gpus: int = 0
    gpu_milli: int = 0
    gpu_mem_mib: int | None = None
    mig_profile: str | None = None
    gpu_models: tuple[str, ...] = ()
    cpu_milli: int = 0
    memory_mib: int = 0
    sharing: str = "time-slice"

    def __post_init__(self):
        object.__setattr__(self, "gpu_models", tuple(self.gpu_models))
        errors = self.problems()
        if errors:
            raise ValueError("invalid slice request: " + "; ".join(errors))
        # computed once: admission asks for it many times per pass
        object.__setattr__(self, "_charge", Resources(self.gpu_total_milli, self.cpu_milli, self.memory_mib))

    def problems(self) -> list[str]:
        """Human-readable validation errors (empty when valid)."""
        p = []
        if self.kind not in SLICE_KINDS:
            p.append(f"kind must be one of {SLICE_KINDS}, not {self.kind!r}")
        if self.cpu_milli < 0 or self.memory_mib < 0:
            p.append("cpu_milli and memory_mib must be >= 0")
        if self.sharing not in SHARING_MODES:
            p.append(f"sharing must be one of {SHARING_MODES}")
        if self.kind == "whole" and not 1 <= self.gpus <= MAX_GPUS_PER_REQUEST:
            p.append(f"a whole-GPU request needs 1..{MAX_GPUS_PER_REQUEST} gpus, not {self.gpus}")
        if self.kind == "share" and not 1 <= self.gpu_milli <= 1000:
            p.append(f"a share needs gpu_milli in 1..1000, not {self.gpu_milli}")
        if self.gpu_mem_mib is not None and self.gpu_mem_mib <= 0:
            p.append("gpu_mem_mib must be positive")
        if self.kind == "mig":
            if not self.mig_profile:
                p.append("a MIG request needs mig_profile")
            elif not self.mig_models():
                p.append(f"no known GPU model offers MIG profile {self.mig_profile!r}" + (
                    f" among {list(self.gpu_models)}" if self.gpu_models else ""))
        return p

    def mig_models(self) -> list[str]:
        """GPU models (restricted by ``gpu_models``) that offer this request's MIG profile."""
        from .models import GPU_MODELS

        names = self.gpu_models or tuple(GPU_MODELS)
        return [n for n in names if (m := gpu_model(n)).mig and self.mig_profile in m.mig.profiles]

    @property
    def gpu_total_milli(self) -> int:
        """GPU charge in milli-GPU (MIG: compute fraction of the smallest model offering the profile)."""
        if self.kind == "whole":
            return 1000 * self.gpus
        if self.kind == "share":
            return self.gpu_milli
        if self.kind == "mig":
            return max(gpu_model(n).mig.milli(self.mig_profile) for n in self.mig_models())
        return 0

    def charge(self) -> Resources:
        """What counts against quota."""
        return self._charge

    def shape(self) -> tuple:
        """A hashable key: requests with equal shapes place identically."""
        return (self.kind, self.gpus, self.gpu_milli, self.gpu_mem_mib, self.mig_profile, self.gpu_models,
                self.cpu_milli, self.memory_mib)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "gpus": self.gpus, "gpu_milli": self.gpu_milli, "gpu_mem_mib": self.gpu_mem_mib,
            "mig_profile": self.mig_profile, "gpu_models": list(self.gpu_models), "cpu_milli": self.cpu_milli,
            "memory_mib": self.memory_mib, "sharing": self.sharing,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SliceRequest":
        known = {"kind", "gpus", "gpu_milli", "gpu_mem_mib", "mig_profile", "gpu_models", "cpu_milli",
                 "memory_mib", "sharing"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown slice request fields: {sorted(unknown)}")
        d = dict(d)
        if "kind" not in d:
            d["kind"] = ("mig" if d.get("mig_profile") else "whole" if d.get("gpus")
                         else "share" if d.get("gpu_milli") else "cpu")
        d["gpu_models"] = tuple(d.get("gpu_models") or ())
        return cls(**d)
