"""What a slice is charged as.

- ``whole``: the number of GPUs assigned (``gpus`` = len(gpu_indices)).
- ``share``: its milli-GPU per GPU / 1000 × the GPUs it spans (a 1/4 share for an hour = 0.25 GPU-hours).
- ``mig``: the instance's compute slices over the model's compute slices — a ``3g.40gb`` on an A100 / H100 /
  H200 (7 compute slices) is exactly 3/7 of its GPU, a ``1g.10gb`` 1/7; memory slices are not charged
  separately (the compute fraction is what the other tenants lose). The scheduler rounds the same fraction
  to milli-GPU for quotas (429 milli); accounting keeps the exact fraction.
- ``cpu``: no GPU. CPU cores = cpu_milli / 1000 and memory GiB = memory_mib / 1024 of the request, for every kind.
"""
from __future__ import annotations

from dataclasses import dataclass

from job_runner.scheduling.models import gpu_model as _model_spec


@dataclass(frozen=True)
class Charge:
    slice_kind: str = "cpu"
    gpu_model: str = ""
    gpus: float = 0.0
    gpu_milli: int = 0
    whole_gpus: int = 0
    mig_profile: str | None = None
    cpu: float = 0.0
    memory_gib: float = 0.0

    def columns(self) -> dict:
        return {"slice_kind": self.slice_kind, "gpu_model": self.gpu_model, "gpus": self.gpus,
                "gpu_milli": self.gpu_milli, "whole_gpus": self.whole_gpus, "mig_profile": self.mig_profile,
                "cpu": self.cpu, "memory_gib": self.memory_gib}


def mig_fraction(model: str, profile: str) -> float:
    """The compute fraction of MIG ``profile`` on GPU ``model`` (3g.40gb on an A100-80GB: 3/7)."""
    spec = _model_spec(model).mig
    if spec is None or profile not in spec.profiles:
        # a model we do not know the geometry of: the "Ng" of the name over 7 (the A100/H100 family's slices)
        g = int(profile.split("g", 1)[0]) if profile[:1].isdigit() else 7
        return min(1.0, g / 7)
    return spec.profiles[profile].compute_slices / spec.compute_slices


def slice_charge(request: dict | None, assignment: dict | None, model_of=None) -> Charge:
    """The charge of a slice from its request and the scheduler's assignment. ``model_of(node, gpu_index)``
    names the GPU model of a placed GPU (the inventory); without it the request's first ``gpu_models``."""
    request, assignment = request or {}, assignment or {}
    cpu = (request.get("cpu_milli") or 0) / 1000.0
    mem = (request.get("memory_mib") or 0) / 1024.0
    indices = list(assignment.get("gpu_indices") or ())
    mig = assignment.get("mig")
    if mig:
        indices = [mig[0]]
    kind = request.get("kind") or ("mig" if request.get("mig_profile") else "whole" if request.get("gpus")
                                   else "share" if request.get("gpu_milli") else "cpu")
    if not indices or kind == "cpu":
        return Charge("cpu", cpu=cpu, memory_gib=mem)
    model = ""
    if model_of is not None:
        try:
            model = model_of(assignment.get("node"), indices[0]) or ""
        except (KeyError, IndexError, ValueError):
            model = ""
    if not model and request.get("gpu_models"):
        model = request["gpu_models"][0]
    model = model or "unknown"
    if mig:
        profile = str(mig[1])
        return Charge("mig", model, mig_fraction(model, profile), 0, 0, profile, cpu, mem)
    if kind == "share":
        milli = int(assignment.get("gpu_milli") or request.get("gpu_milli") or 0)
        return Charge("share", model, milli / 1000.0 * len(indices), milli, 0, None, cpu, mem)
    return Charge("whole", model, float(len(indices)), 1000, len(indices), None, cpu, mem)


def inventory_models(inventory):
    """``model_of`` for an ``Inventory``: (node name, GPU index) -> GPU model."""
    def model_of(node, index):
        n = inventory.node(node)
        for g in n.gpus:
            if g.index == index:
                return g.model
        return None
    return model_of
