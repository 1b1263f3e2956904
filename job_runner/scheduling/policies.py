"""Placement policies: choose the node and GPU(s) for one slice request.

- ``first-fit``: the first node (inventory order) and its first GPUs that fit.
- ``best-fit``: the node left with the least free GPU (then CPU) after placing, the tightest GPU.
- ``fgd``: Fragmentation Gradient Descent (Weng et al., "Beware of Fragmentation: Scheduling
  GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC'23): the placement that
  least increases the node's expected GPU fragmentation w.r.t. the target workload distribution.
- ``default``: the product policy (see :class:`PackedFGD`).

Every policy returns a :class:`~.state.Placement` or None, and never changes the state.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .slices import SliceRequest
from .state import ClusterState, Placement


class PlacementPolicy:
    """Base: dispatches by request kind; MIG placement is shared (it is rare and cheap)."""

    name = "base"

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


# ---------------------------------------------------------------------------------------------------
# Fragmentation Gradient Descent


@dataclass
class TargetWorkload:
    """Task classes and their popularity: what future requests are expected to look like."""

    cpu: np.ndarray  # [K] milli
    mem: np.ndarray  # [K] MiB
    share: np.ndarray  # [K] bool: asks for part of one GPU
    whole: np.ndarray  # [K] bool: asks for whole GPUs
    milli: np.ndarray  # [K] share size (share classes)
    ngpu: np.ndarray  # [K] whole GPUs (whole classes)
    models: list  # [K] gpu_models tuples
    weight: np.ndarray  # [K] popularity, sums to 1

    @classmethod
    def from_requests(cls, requests, top: float = 1.0, max_classes: int = 64) -> "TargetWorkload":
        """Classes = distinct (cpu, memory, GPU ask, models) shapes; keep the most popular covering
        ``top`` of the requests, at most ``max_classes``."""
        counts = Counter(
            (r.cpu_milli, r.memory_mib, r.kind, r.gpus if r.kind == "whole" else 0,
             r.gpu_milli if r.kind == "share" else 0, tuple(r.gpu_models))
            for r in requests if r.kind != "mig"
        )
        if not counts:
            counts = Counter({(0, 0, "whole", 1, 0, ()): 1})
        total = sum(counts.values())
        rows, acc = [], 0
        for key, c in counts.most_common(max_classes):
            rows.append((key, c))
            acc += c
            if acc >= top * total:
                break
        w = np.array([c for _, c in rows], dtype=np.float64)
        return cls(
            cpu=np.array([k[0] for k, _ in rows], dtype=np.int64),
            mem=np.array([k[1] for k, _ in rows], dtype=np.int64),
            share=np.array([k[2] == "share" for k, _ in rows]),
            whole=np.array([k[2] == "whole" for k, _ in rows]),
            milli=np.array([k[4] for k, _ in rows], dtype=np.int64),
            ngpu=np.array([k[3] for k, _ in rows], dtype=np.int64),
            models=[k[5] for k, _ in rows],
            weight=w / w.sum(),
        )


class FGD(PlacementPolicy):
    """Fragmentation Gradient Descent.

    Fragmentation of a node for a task class m (the paper's F_n(m)): if m cannot run on the node at all
    (CPU, memory, GPU model, not enough GPU), every free GPU milli of the node is a fragment; otherwise
    the free milli of GPUs with less free than min(m's GPU ask, 1 GPU). F_n = sum_m p_m F_n(m). A task
    goes where F_n(after) - F_n(before) is least.

    Speed: the increase of every node for a given task shape only changes when that node changes, so
    it is cached per shape and recomputed (vectorised over nodes x candidate GPUs x classes) for the
    nodes whose version moved since.
    """

    name = "fgd"

    def __init__(self, target: TargetWorkload | None = None):
        self.target = target or TargetWorkload.from_requests([])
        self._cache: dict = {}
        self._state_id = None
        self._frag_now = None
        self._frag_version = None
        self._allowed: dict = {}

    def set_target(self, target: TargetWorkload) -> None:
        self.target = target
        self._cache.clear()
        self._state_id = None

    # fragmentation of many hypothetical node states at once
    def fragmentation(self, state: ClusterState, cpu, mem, free, model) -> np.ndarray:
        t = self.target
        key = id(state.model_names)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = np.stack([state.allowed_models(m) for m in t.models], axis=1)  # [M+1, K]
            self._allowed[key] = allowed
        fz = np.maximum(free, 0)
        total = fz.sum(1)
        full = (free == 1000).sum(1)
        top = fz.max(1) if fz.shape[1] else np.zeros(len(fz))
        bad = (cpu[:, None] < t.cpu) | (mem[:, None] < t.mem) | ~allowed[model]
        bad |= t.share & (top[:, None] < t.milli)
        bad |= t.whole & (full[:, None] < t.ngpu)
        thresh = np.where(t.share, t.milli, np.where(t.whole, 1000, 0))
        partial = (fz[:, :, None] * (fz[:, :, None] < thresh)).sum(1)
        frag = np.where(bad, total[:, None], partial)
        return frag @ t.weight

    def _sync(self, state: ClusterState):
        if self._state_id != id(state) or self._frag_now is None:
            self._state_id = id(state)
            self._allowed = {}
            self._cache = {}
            self._frag_now = self.fragmentation(state, state.cpu_free, state.mem_free, state.gpu_free,
                                                state.node_model)
            self._frag_version = state.version.copy()
        else:
            moved = np.flatnonzero(self._frag_version != state.version)
            if len(moved):
                self._frag_now[moved] = self.fragmentation(
                    state, state.cpu_free[moved], state.mem_free[moved], state.gpu_free[moved],
                    state.node_model[moved])
                self._frag_version[moved] = state.version[moved]

    def deltas(self, state: ClusterState, req: SliceRequest, nodes: np.ndarray, gpu_ok):
        """(fragmentation increase, chosen GPU or -1) for placing ``req`` on each of ``nodes``."""
        cpu = state.cpu_free[nodes] - req.cpu_milli
        mem = state.mem_free[nodes] - req.memory_mib
        if req.kind == "cpu" or req.kind == "whole":
            free = state.gpu_free[nodes].copy()
            if req.kind == "whole":
                ok = gpu_ok[nodes]
                take = ok & (np.cumsum(ok, axis=1) <= req.gpus)
                free[take] = 0
            after = self.fragmentation(state, cpu, mem, free, state.node_model[nodes])
            return after - self._frag_now[nodes], np.full(len(nodes), -1)
        # share: one candidate per distinct free value of the fitting GPUs of each node
        rows, cols = np.nonzero(gpu_ok[nodes])
        vals = state.gpu_free[nodes[rows], cols]
        _, first = np.unique(rows * 2048 + vals, return_index=True)
        rows, cols = rows[first], cols[first]
        free = state.gpu_free[nodes[rows]].copy()
        free[np.arange(len(rows)), cols] -= req.gpu_milli
        after = self.fragmentation(state, cpu[rows], mem[rows], free, state.node_model[nodes[rows]])
        delta = after - self._frag_now[nodes[rows]]
        best = np.full(len(nodes), np.inf)
        choice = np.full(len(nodes), -1)
        # the least increase per node (ties: the GPU with least free, i.e. tightest)
        order = np.lexsort((vals[first], delta))
        seen = np.zeros(len(nodes), dtype=bool)
        for k in order:  # small: one or two candidates per node
            r = rows[k]
            if not seen[r]:
                seen[r] = True
                best[r] = delta[k]
                choice[r] = cols[k]
        return best, choice

    def node_scores(self, state: ClusterState, req: SliceRequest, node_ok, gpu_ok):
        """Fragmentation increase per node (inf where it does not fit) and the GPU chosen there."""
        self._sync(state)
        shape = req.shape()
        entry = self._cache.get(shape)
        if entry is None:
            entry = [np.full(state.n_nodes, -1, dtype=np.int64), np.full(state.n_nodes, np.inf),
                     np.full(state.n_nodes, -1)]
            self._cache[shape] = entry
        seen_version, delta, choice = entry
        stale = np.flatnonzero(seen_version != state.version)
        if len(stale):
            fit = stale[node_ok[stale]]
            delta[stale] = np.inf
            if len(fit):
                d, c = self.deltas(state, req, fit, gpu_ok)
                delta[fit] = d
                choice[fit] = c
            seen_version[stale] = state.version[stale]
        return delta, choice

    def choose(self, state, req, node_ok, gpu_ok):
        delta, choice = self.node_scores(state, req, node_ok, gpu_ok)
        i = self.pick(state, req, delta, node_ok)
        if i is None:
            return None
        if req.kind == "cpu":
            return Placement(i)
        if req.kind == "whole":
            return Placement(i, self.whole_gpus(gpu_ok[i], req.gpus))
        return Placement(i, (int(choice[i]),))

    def pick(self, state, req, delta, node_ok) -> int | None:
        i = int(np.argmin(delta))
        return i if np.isfinite(delta[i]) else None


class PackedFGD(FGD):
    """The product policy: FGD with two changes that target what is left unallocated.

    1. Classes are weighted by popularity x (GPU ask) ** ``demand_exponent``: a fragment that blocks an
       8-GPU task loses more GPU than one that blocks a 0.2-GPU share, so large classes count more
       (plain FGD weights by popularity only).
    2. Nodes whose fragmentation increase is within ``packing_weight`` x (free GPU milli of the node)
       of each other are ordered best-fit style: the fullest node wins, which keeps empty nodes for the
       multi-GPU and large-CPU tasks only empty nodes can take.
    """

    name = "default"

    def __init__(self, target=None, demand_exponent: float = 0.5, packing_weight: float = 0.0,
                 tolerance: float = 1e-6):
        self.demand_exponent = demand_exponent
        self.packing_weight = packing_weight
        self.tolerance = tolerance
        super().__init__(self._reweight(target) if target is not None else None)

    def set_target(self, target: TargetWorkload) -> None:
        super().set_target(self._reweight(target))

    def _reweight(self, t: TargetWorkload) -> TargetWorkload:
        ask = np.where(t.share, t.milli, np.where(t.whole, t.ngpu * 1000, 0)).astype(np.float64)
        w = t.weight * np.maximum(ask, 100.0) ** self.demand_exponent
        return TargetWorkload(t.cpu, t.mem, t.share, t.whole, t.milli, t.ngpu, t.models, w / w.sum())

    def pick(self, state, req, delta, node_ok):
        best = delta.min()
        if not np.isfinite(best):
            return None
        free_gpu = None
        if self.packing_weight:
            free_gpu = np.maximum(state.gpu_free, 0).sum(1)
            score = delta + self.packing_weight * free_gpu
            best = score.min()
            tied = np.flatnonzero(score <= best + self.tolerance)
        else:
            tied = np.flatnonzero(delta <= best + self.tolerance)
        if len(tied) == 1:
            return int(tied[0])
        free_gpu = np.maximum(state.gpu_free[tied], 0).sum(1)
        cpu_share = state.cpu_free[tied] / np.maximum(state.cpu_cap[tied], 1)
        return int(tied[np.argmin(free_gpu + cpu_share)])


POLICIES = {"first-fit": FirstFit, "best-fit": BestFit, "fgd": FGD, "default": PackedFGD}


def make_policy(name: str, target: TargetWorkload | None = None) -> PlacementPolicy:
    """A policy by name; fragmentation-aware ones take the target workload."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown placement policy {name!r}; choose from {sorted(POLICIES)}") from None
    return cls(target) if issubclass(cls, FGD) else cls()
