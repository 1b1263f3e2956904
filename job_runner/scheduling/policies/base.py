"""Placement policies without a workload model: the base class (request dispatch, MIG packing),
``first-fit`` and ``best-fit``. Every policy returns a :class:`~..state.Placement` or None, and never
changes the state."""
from __future__ import annotations

import numpy as np

from ..slices import SliceRequest
from ..state import ClusterState, Placement


class PlacementPolicy:
    """Base: dispatches by request kind; MIG placement is shared (it is rare and cheap)."""

    name = "base"

    def observe(self, req: SliceRequest) -> None:
        """A workload of this shape was submitted (policies that learn the workload online use it)."""

    def state_replaced(self) -> None:
        """The scheduler replaced its cluster state (a restore): drop anything cached about the old one."""

    def place(self, state: ClusterState, req: SliceRequest) -> Placement | None:
        node_ok, gpu_ok = state.feasible(req)
        if not node_ok.any():
            return None
        if req.kind == "mig":
            return self.place_mig(state, req, np.flatnonzero(node_ok))
        return self.choose(state, req, node_ok, gpu_ok)

    def choose(self, state, req, node_ok, gpu_ok) -> Placement | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def whole_gpus(gpu_ok_row: np.ndarray, n: int) -> tuple[int, ...]:
        return tuple(int(g) for g in np.flatnonzero(gpu_ok_row)[:n])

    def place_mig(self, state: ClusterState, req: SliceRequest, nodes: np.ndarray) -> Placement | None:
        """Pack MIG instances: the most-used MIG GPU first, the lowest legal slot (keeps large
        contiguous ranges free for big profiles)."""
        models = state.allowed_models(tuple(req.mig_models()))
        best = None
        for i in nodes:
            for g in np.flatnonzero(state.mig_gpu[i] & models[state.gpu_model[i]]):
                starts = state.mig_starts(int(i), int(g), req.mig_profile)
                if not starts:
                    continue
                used = bin(state.mig_used.get((int(i), int(g)), 0)).count("1")
                key = (-used, int(i), int(g))
                if best is None or key < best[0]:
                    best = (key, Placement(int(i), (int(g),), (int(g), req.mig_profile, starts[0])))
        return best[1] if best else None


class FirstFit(PlacementPolicy):
    name = "first-fit"

    def choose(self, state, req, node_ok, gpu_ok):
        i = int(np.argmax(node_ok))
        if req.kind == "cpu":
            return Placement(i)
        n = req.gpus if req.kind == "whole" else 1
        return Placement(i, self.whole_gpus(gpu_ok[i], n))

    def place_mig(self, state, req, nodes):
        models = state.allowed_models(tuple(req.mig_models()))
        for i in nodes:
            for g in np.flatnonzero(state.mig_gpu[i] & models[state.gpu_model[i]]):
                starts = state.mig_starts(int(i), int(g), req.mig_profile)
                if starts:
                    return Placement(int(i), (int(g),), (int(g), req.mig_profile, starts[0]))
        return None


class BestFit(PlacementPolicy):
    """Tightest node: least free GPU left on it after placing, then least free CPU share."""

    name = "best-fit"

    def choose(self, state, req, node_ok, gpu_ok):
        free_gpu = np.where(state.gpu_free > 0, state.gpu_free, 0).sum(1)
        cpu_share = state.cpu_free / np.maximum(state.cpu_cap, 1)
        score = free_gpu + cpu_share  # GPU milli dominates, CPU breaks ties
        score = np.where(node_ok, score, np.inf)
        i = int(np.argmin(score))
        if req.kind == "cpu":
            return Placement(i)
        if req.kind == "whole":
            return Placement(i, self.whole_gpus(gpu_ok[i], req.gpus))
        row = np.where(gpu_ok[i], state.gpu_free[i], 1 << 30)
        return Placement(i, (int(np.argmin(row)),))
