"""Placement policies: choose the node and GPU(s) for one slice request.

- ``first-fit``: the first node (inventory order) and its first GPUs that fit.
- ``best-fit``: the node left with the least free GPU (then CPU) after placing, the tightest GPU.
- ``fgd``: Fragmentation Gradient Descent (Weng et al., "Beware of Fragmentation: Scheduling
  GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC'23), as the paper's
  simulator runs it (:class:`FGD`).
- ``default``: the product policy (:class:`PackedFGD`).

Every policy returns a :class:`~..state.Placement` or None, and never changes the state. Modules:
``base`` (interface, first-fit, best-fit), ``target`` (target workload classes, learned online or
given), ``frag`` (the fragmentation machinery), ``fgd``, ``packed`` (``default``).
"""
from __future__ import annotations

from .base import BestFit, FirstFit, PlacementPolicy
from .fgd import FGD
from .frag import FragmentationPolicy
from .packed import PackedFGD
from .target import OnlineTarget, TargetWorkload

POLICIES = {"first-fit": FirstFit, "best-fit": BestFit, "fgd": FGD, "default": PackedFGD}


def make_policy(name: str, target: TargetWorkload | None = None, seed: int = 0) -> PlacementPolicy:
    """A policy by name. Fragmentation-aware ones take the target workload (None: learn it online
    from ``observe``) and a seed for random tie-breaking."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown placement policy {name!r}; choose from {sorted(POLICIES)}") from None
    if issubclass(cls, FragmentationPolicy):
        return cls(target, seed=seed)
    return cls()


__all__ = ["POLICIES", "FGD", "BestFit", "FirstFit", "FragmentationPolicy", "OnlineTarget", "PackedFGD",
           "PlacementPolicy", "TargetWorkload", "make_policy"]
