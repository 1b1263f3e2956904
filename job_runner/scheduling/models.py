"""GPU models and the MIG placement rules of the models that support MIG.

The MIG tables follow NVIDIA's "MIG User Guide" (supported profiles and
``nvidia-smi mig -lgipp`` placements): a GPU is divided into memory slices
(8 on A100/H100/H200, 4 on A30); each GPU-instance profile occupies ``size``
consecutive slices and may only start at the listed ``starts``.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MigProfile:
    """One MIG GPU-instance profile, e.g. ``3g.40gb`` on an A100-80GB."""

    name: str
    compute_slices: int  # the "Ng" part: share of the SMs (out of MigSpec.compute_slices)
    memory_mib: int
    size: int  # memory slices occupied
    starts: tuple[int, ...]  # legal start slots
    max_instances: int

    def mask(self, start: int) -> int:
        """Bitmask of the memory slices used when placed at ``start``."""
        return ((1 << self.size) - 1) << start


@dataclass(frozen=True)
class MigSpec:
    """MIG geometry of a GPU model."""

    slots: int  # memory slices
    compute_slices: int
    profiles: dict[str, MigProfile] = field(default_factory=dict)

    def profile(self, name: str) -> MigProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise KeyError(f"MIG profile {name!r} does not exist; known: {sorted(self.profiles)}") from None

    def milli(self, profile: str) -> int:
        """The GPU share (milli-GPU) a profile is charged as: its compute fraction."""
        p = self.profile(profile)
        return round(1000 * p.compute_slices / self.compute_slices)

    def legal_starts(self, used_mask: int, counts: dict[str, int], profile: str) -> list[int]:
        """Start slots where ``profile`` can be created given the occupied slices."""
        p = self.profile(profile)
        if counts.get(profile, 0) >= p.max_instances:
            return []
        return [s for s in p.starts if not used_mask & p.mask(s)]


@dataclass(frozen=True)
class GPUModel:
    """A GPU model: its name, memory and MIG geometry (None when MIG is unsupported)."""

    name: str
    memory_mib: int
    mig: MigSpec | None = None


def _mig(slots: int, compute: int, rows: list[tuple[str, int, int, int, tuple[int, ...], int]]) -> MigSpec:
    return MigSpec(
        slots=slots,
        compute_slices=compute,
        profiles={n: MigProfile(n, g, gb * 1024, size, starts, mx) for n, g, gb, size, starts, mx in rows},
    )


def _seven_slice(mem1: int, mem2: int, mem3: int, mem4: int, mem7: int) -> MigSpec:
    """A100/H100/H200 family: 7 compute slices on 8 memory slices."""
    g1, g1x2, g2, g3, g4, g7 = (
        f"1g.{mem1}gb",
        f"1g.{mem2}gb",
        f"2g.{mem2}gb",
        f"3g.{mem3}gb",
        f"4g.{mem4}gb",
        f"7g.{mem7}gb",
    )
    return _mig(
        8,
        7,
        [
            (g1, 1, mem1, 1, (0, 1, 2, 3, 4, 5, 6), 7),
            (g1x2, 1, mem2, 2, (0, 2, 4, 6), 4),
            (g2, 2, mem2, 2, (0, 2, 4), 3),
            (g3, 3, mem3, 4, (0, 4), 2),
            (g4, 4, mem4, 4, (0,), 1),
            (g7, 7, mem7, 8, (0,), 1),
        ],
    )


A100_40_MIG = _seven_slice(5, 10, 20, 20, 40)
A100_80_MIG = _seven_slice(10, 20, 40, 40, 80)
H100_80_MIG = _seven_slice(10, 20, 40, 40, 80)
H200_MIG = _seven_slice(18, 35, 71, 71, 141)
A30_MIG = _mig(
    4,
    4,
    [
        ("1g.6gb", 1, 6, 1, (0, 1, 2, 3), 4),
        ("2g.12gb", 2, 12, 2, (0, 2), 2),
        ("4g.24gb", 4, 24, 4, (0,), 1),
    ],
)

GPU_MODELS: dict[str, GPUModel] = {
    m.name: m
    for m in [
        GPUModel("A100-40GB", 40 * 1024, A100_40_MIG),
        GPUModel("A100-80GB", 80 * 1024, A100_80_MIG),
        GPUModel("H100-80GB", 80 * 1024, H100_80_MIG),
        GPUModel("H200", 141 * 1024, H200_MIG),
        GPUModel("A30", 24 * 1024, A30_MIG),
        GPUModel("T4", 16 * 1024),
        GPUModel("L4", 24 * 1024),
        GPUModel("L40S", 48 * 1024),
        GPUModel("A10", 24 * 1024),
        GPUModel("V100M16", 16 * 1024),
        GPUModel("V100M32", 32 * 1024),
        GPUModel("P100", 16 * 1024),
        # Alibaba's anonymised models in cluster-trace-gpu-v2023 (memory not published).
        GPUModel("G2", 0),
        GPUModel("G3", 0),
    ]
}


def gpu_model(name: str) -> GPUModel:
    """The registered model, or an ad-hoc one without MIG for unknown names (e.g. new trace models)."""
    return GPU_MODELS.get(name) or GPUModel(name, 0, None)
