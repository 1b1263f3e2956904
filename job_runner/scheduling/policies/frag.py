"""Machinery shared by the fragmentation-aware policies, and ``fgd`` itself.

A :class:`FragmentationPolicy` scores a placement by how much it raises the node's fragmentation
with respect to a :class:`~.target.TargetWorkload` (given, or learned online through ``observe``).
Subclasses define the fragmentation measure (:meth:`fragmentation`), how an increase becomes a
cost (:meth:`cost`), how equal costs are broken between GPUs of a node and between nodes.

Speed: the cost of every node for a request shape only changes when that node changes, so it is
cached per shape and recomputed, vectorised over (nodes x candidate GPUs x classes), only for the
nodes whose version moved since; on a fresh cluster identical node states are scored once.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..slices import SliceRequest
from ..state import ClusterState, Placement
from .base import PlacementPolicy
from .target import OnlineTarget, TargetWorkload

_HASH_MULT = (np.random.default_rng(20230710).integers(1, 2 ** 63, size=64, dtype=np.uint64) | np.uint64(1))


class FragmentationPolicy(PlacementPolicy):
    """Base of ``fgd`` and ``default``: target workload, cached per-shape node costs, placement."""

    # does the fragmentation depend on the request's memory? If not, requests differing only in
    # memory share one cache entry and memory is checked when picking.
    memory_in_score = True

    def __init__(self, target: TargetWorkload | None = None, seed: int = 0):
        # A target given here is fixed (the simulator's offline knowledge of the trace); without one
        # it is learned online from the requests the scheduler observes.
        self._online = OnlineTarget() if target is None else None
        self._rng = np.random.default_rng(seed)
        self._cache: dict = {}
        self._state_id = None
        self._frag_now = None
        self._frag_version = None
        self._sums_now = None
        self._tables = None
        self._tables_key = None
        self._dirty = False
        self.target = None
        self.set_target(target if target is not None else TargetWorkload.from_requests([]))

    # ---- target workload ---------------------------------------------------------------------
    def set_target(self, target: TargetWorkload) -> None:
        self.raw_target = target
        self.target = self.prepare_target(target)
        self._tables = None
        self._cache.clear()
        self._state_id = None

    def prepare_target(self, target: TargetWorkload) -> TargetWorkload:
        return target

    def observe(self, req: SliceRequest) -> None:
        if self._online is not None and self._online.observe(req):
            self._dirty = True

    def state_replaced(self) -> None:
        self._state_id = None

    def _refresh_target(self) -> None:
        if self._dirty:
            self._dirty = False
            new = self._online.target(self.raw_target)
            if new is not None:
                self.set_target(new)

    def tables(self, state: ClusterState) -> dict:
        """Per-target lookup tables (built by :meth:`build_tables`), per inventory."""
        key = id(state.model_names)
        if self._tables is None or self._tables_key != key:
            t = self.target
            self._tables = self.build_tables(state, t)
            self._tables["allowed"] = np.stack([state.allowed_models(m) for m in t.models], axis=1)  # [M+1, K]
            self._tables_key = key
        return self._tables

    def build_tables(self, state: ClusterState, t: TargetWorkload) -> dict:
        return {}

    # ---- to define ---------------------------------------------------------------------------
    # tables()["lut"]: [1001, C] per free milli value of one GPU, columns that add up over a node's
    # GPUs (counts and milli, integers: sums are exact in float64)
    def frag_sums(self, state, cpu, mem, sums, model) -> np.ndarray:  # pragma: no cover - abstract
        """Fragmentation of many hypothetical node states at once: [H] from cpu [H], mem [H], the
        node's per-GPU table rows summed over its GPUs [H, C], model [H]."""
        raise NotImplementedError

    def fragmentation(self, state, cpu, mem, free, model) -> np.ndarray:
        """:meth:`frag_sums` of node states given as free milli per GPU [H, G] (-1 = none)."""
        return self.frag_sums(state, cpu, mem, self._gpu_sums(state, free), model)

    def _gpu_sums(self, state, free) -> np.ndarray:
        return self.tables(state)["lut"][np.maximum(free, 0)].sum(1)

    def cost(self, delta: np.ndarray) -> np.ndarray:
        """Cost of placements that raise fragmentation by ``delta`` (least wins)."""
        return np.round(delta, 3)  # equal increases compare equal whatever the batch's float order

    def gpu_key(self, cost, cols, vals) -> np.ndarray:
        """Order of a node's candidate GPUs for a share (least wins); cost first."""
        return cost + vals * 1e-7  # equal cost: the GPU with least free (costs are multiples of 1e-3)

    def pick(self, state: ClusterState, req: SliceRequest, cost: np.ndarray) -> int | None:  # pragma: no cover
        raise NotImplementedError

    # ---- scoring ------------------------------------------------------------------------------
    def _frag_rows(self, state: ClusterState, cpu, mem, free, model):
        """(:meth:`fragmentation`, table sums) of many rows, computed once per distinct node state
        when there are many (an empty cluster has a handful of distinct node states among a
        thousand nodes)."""
        if len(cpu) <= 64:
            sums = self._gpu_sums(state, free)
            return self.frag_sums(state, cpu, mem, sums, model), sums
        # np.unique on one digest column is far faster than on rows
        _, first, inverse = np.unique(self._row_digest(cpu, mem, free, model), return_index=True,
                                      return_inverse=True)
        sums = self._gpu_sums(state, free[first])
        frag = self.frag_sums(state, cpu[first], mem[first], sums, model[first])
        inverse = inverse.reshape(-1)
        return frag[inverse], sums[inverse]

    def _sync(self, state: ClusterState):
        """Reset the caches when the policy is pointed at another state object."""
        if self._state_id != id(state) or self._frag_now is None:
            self._state_id = id(state)
            self._cache = {}
            self._frag_now, self._sums_now = self._frag_rows(state, state.cpu_free, state.mem_free,
                                                             state.gpu_free, state.node_model)
            self._frag_version = state.version.copy()
            self._digest_now = np.zeros(state.n_nodes, dtype=np.uint64)
            self._digest_version = np.full(state.n_nodes, -1, dtype=np.int64)

    def deltas(self, state: ClusterState, req: SliceRequest, nodes: np.ndarray, gpu_ok_rows):
        """(cost, chosen GPU or -1) of placing ``req`` on each of ``nodes`` (``gpu_ok_rows``: the
        per-GPU fit mask of those nodes). The nodes' current fragmentation is refreshed in the same
        vectorised call where they changed.

        A node after placing differs from the node now in one GPU (a share) or in k whole free GPUs:
        its table sums are the node's current sums (kept per node) plus the change of those GPUs'
        rows, so only changed nodes are summed over all their GPUs."""
        cpu = state.cpu_free[nodes] - req.cpu_milli
        mem = state.mem_free[nodes] - req.memory_mib
        cols = vals = None
        if req.kind == "share":
            # one candidate per distinct free value among the fitting GPUs of each node (the first
            # such GPU: a stable sort keeps GPU order among equal values)
            fr = np.where(gpu_ok_rows, state.gpu_free[nodes], -1)
            order = np.argsort(fr, axis=1, kind="stable")
            sv = np.take_along_axis(fr, order, axis=1)
            keep = sv >= 0
            keep[:, 1:] &= sv[:, 1:] != sv[:, :-1]
            rows, j = np.nonzero(keep)
            cols, vals = order[rows, j], sv[rows, j]
            cpu, mem = cpu[rows], mem[rows]
        else:
            rows = np.arange(len(nodes))
        stale = nodes[self._frag_version[nodes] != state.version[nodes]]
        n_after = len(rows)
        if n_after + len(stale) > 64:
            frag = self._rows_full(state, req, nodes, rows, vals, cpu, mem, stale)
        else:
            frag = self._rows_incremental(state, req, nodes, rows, vals, cpu, mem, stale)
        cost = self.cost(frag[:n_after] - self._frag_now[nodes[rows]])
        if cols is None:
            return cost, np.full(len(nodes), -1)
        table = np.full((len(nodes), state.gpu_free.shape[1]), np.inf)
        table[rows, cols] = self.gpu_key(cost, cols, vals)
        choice = np.argmin(table, axis=1)  # every node given here has a candidate GPU
        chosen_cost = np.full(table.shape, np.inf)
        chosen_cost[rows, cols] = cost
        best = chosen_cost[np.arange(len(nodes)), choice]
        return best, choice

    def _store_now(self, state, stale, frag, sums) -> None:
        self._frag_now[stale] = frag
        self._sums_now[stale] = sums
        self._frag_version[stale] = state.version[stale]

    def _rows_full(self, state, req, nodes, rows, vals, cpu, mem, stale):
        """Many rows: the after-states from the nodes' current sums, scored once per distinct
        (node state now, candidate GPU's free value): a young cluster has few distinct node states."""
        if len(stale):
            frag, sums = self._frag_rows(state, state.cpu_free[stale], state.mem_free[stale],
                                         state.gpu_free[stale], state.node_model[stale])
            self._store_now(state, stale, frag, sums)
        at = nodes[rows]
        digest = self._digests(state, at)
        if vals is not None:
            digest = digest * _HASH_MULT[0] + vals.astype(np.uint64)
        _, first, inverse = np.unique(digest, return_index=True, return_inverse=True)
        u = at[first]
        sums = self._after_sums(state, req, u, None if vals is None else vals[first])
        frag = self.frag_sums(state, cpu[first], mem[first], sums, state.node_model[u])
        return frag[inverse.reshape(-1)]

    def _after_sums(self, state, req, at, vals):
        """Table sums of nodes ``at`` after placing ``req`` (on the GPU of free value ``vals``)."""
        lut = self.tables(state)["lut"]
        sums = self._sums_now[at]
        if req.kind == "whole":
            sums = sums + req.gpus * (lut[0] - lut[1000])
        elif req.kind == "share":
            sums = sums + (lut[vals - req.gpu_milli] - lut[vals])
        return sums

    @staticmethod
    def _row_digest(cpu, mem, free, model) -> np.ndarray:
        """One uint64 per node state (cpu, mem, free per GPU in any order, model): a multiply-add
        with odd 64-bit constants, wrapping; a collision (~n^2/2^64) would only mis-score a node."""
        key = np.concatenate([cpu[:, None], mem[:, None], np.sort(free, axis=1), model[:, None]], axis=1)
        return (key.astype(np.uint64) * _HASH_MULT[: key.shape[1]]).sum(axis=1)

    def _digests(self, state, at) -> np.ndarray:
        """Digests of the current states of nodes ``at``, recomputed where they changed."""
        moved = at[self._digest_version[at] != state.version[at]]
        if len(moved):
            self._digest_now[moved] = self._row_digest(state.cpu_free[moved], state.mem_free[moved],
                                                       state.gpu_free[moved], state.node_model[moved])
            self._digest_version[moved] = state.version[moved]
        return self._digest_now[at]

    def _rows_incremental(self, state, req, nodes, rows, vals, cpu, mem, stale):
        """Few rows: the changed nodes summed over their GPUs, the after-states from those sums."""
        if len(stale):
            s_stale = self._gpu_sums(state, state.gpu_free[stale])
            self._sums_now[stale] = s_stale
        sums = self._after_sums(state, req, nodes[rows], vals)
        model = state.node_model[nodes[rows]]
        if len(stale):
            cpu = np.concatenate([cpu, state.cpu_free[stale]])
            mem = np.concatenate([mem, state.mem_free[stale]])
            sums = np.concatenate([sums, s_stale])
            model = np.concatenate([model, state.node_model[stale]])
        frag = self.frag_sums(state, cpu, mem, sums, model)
        if len(stale):
            self._store_now(state, stale, frag[len(rows):], s_stale)
        return frag

    def _key(self, req: SliceRequest) -> tuple:
        s = (req.kind, req.gpus, req.gpu_milli, req.gpu_mem_mib, req.gpu_models, req.cpu_milli)
        return s + (req.memory_mib,) if self.memory_in_score else s

    def node_costs(self, state: ClusterState, req: SliceRequest):
        """Cost per node (inf where it does not fit) and the GPU chosen there. Only nodes that
        changed since this request shape was last scored are looked at."""
        self._refresh_target()
        self._sync(state)
        key = self._key(req)
        entry = self._cache.get(key)
        if entry is None:
            # scored as if asking no memory when memory does not enter the score: one entry serves
            # every memory ask, and memory is checked in place()
            scored = req if self.memory_in_score or not req.memory_mib else dataclasses.replace(req, memory_mib=0)
            entry = [np.full(state.n_nodes, -1, dtype=np.int64), np.full(state.n_nodes, np.inf),
                     np.full(state.n_nodes, -1), scored]
            self._cache[key] = entry
        seen_version, cost, choice, scored = entry
        stale = np.flatnonzero(seen_version != state.version)
        if len(stale):
            ok, gpu_ok = state.feasible_rows(scored, stale)
            fit = stale[ok]
            cost[stale] = np.inf
            if len(fit):
                d, c = self.deltas(state, scored, fit, gpu_ok[ok] if gpu_ok is not None else None)
                cost[fit] = d
                choice[fit] = c
            seen_version[stale] = state.version[stale]
        if not self.memory_in_score and req.memory_mib:
            cost = np.where(state.mem_free >= req.memory_mib, cost, np.inf)
        return cost, choice

    def place(self, state: ClusterState, req: SliceRequest) -> Placement | None:
        if req.kind == "mig":
            return super().place(state, req)
        cost, choice = self.node_costs(state, req)
        i = self.pick(state, req, cost)
        if i is None:
            return None
        if req.kind == "cpu":
            return Placement(i)
        if req.kind == "whole":
            _, gpu_ok = state.feasible_rows(req, np.array([i]))
            return Placement(i, self.whole_gpus(gpu_ok[0], req.gpus))
        return Placement(i, (int(choice[i]),))


class FGD(FragmentationPolicy):
    """Fragmentation Gradient Descent (Weng et al., USENIX ATC'23) as the paper's simulator
    (hkust-adsl/kubernetes-scheduler-simulator: FGDScore plugin, pkg/utils/frag.go) runs it.

    Fragmentation of a node for class m (``NodeGpuShareFragAmount``): all its free GPU milli if m asks
    no GPU (CPU-only classes count everything, the simulator's "XL/XR" cases), if m may not use the
    node's GPU model ("no access"), if the node lacks m's CPU, or if fewer than m's GPU count of its
    GPUs have m's per-GPU ask free; otherwise the free milli of the GPUs with less free than that ask.
    Memory does not enter it (the simulator's PodResource has none; memory is only a fit condition).
    F_n = sum_m p_m F_n(m).

    The score is Kubernetes-style: ``int(100 * sigmoid((F_before - F_after) / 1000))``, so increases
    within about 40 milli-GPU of each other score alike; the node with the highest score wins, equal
    scores the node whose name sorts first (the simulator's vendored Kubernetes); within a node a
    share goes to its first GPU (index order) of highest score.
    """

    name = "fgd"
    memory_in_score = False

    def build_tables(self, state, t):
        v = np.arange(1001)[:, None]
        ask = t.per_gpu_milli
        gpu_cls = ask > 0
        # per free value: [enough for the class's per-GPU ask (count), fragment if not (milli)]
        lut = np.concatenate([(v >= ask) & gpu_cls, np.where((v < ask) & gpu_cls, v, 0), v], axis=1)
        return {"lut": lut.astype(np.float64), "n": len(ask), "gpu_cls": gpu_cls,
                "need": np.where(t.share, 1, t.ngpu), "cpu": t.cpu}

    def frag_sums(self, state, cpu, mem, per, model):
        k = self.tables(state)
        n = k["n"]
        fits, partial, total = per[:, :n], per[:, n:2 * n], per[:, 2 * n]
        ok = k["gpu_cls"] & k["allowed"][model] & (cpu[:, None] >= k["cpu"]) & (fits >= k["need"])
        frag = np.where(ok, partial, total[:, None])
        return frag @ self.target.weight

    def cost(self, delta):
        # Go: int64(sigmoid((before-after)/1000) * MaxNodeScore); the least cost is the highest score.
        # The increase is rounded to 1e-6 milli first: the simulator scores a node's state before and
        # after with the same arithmetic, so an unchanged fragmentation is exactly 0 (score 50); ours
        # sums rows in batches of different sizes, whose float rounding (~1e-13) would truncate 50 to 49
        delta = np.round(delta, 6)
        return -np.trunc((1.0 / (1.0 + np.exp(delta / 1000.0))) * 100.0)

    def gpu_key(self, cost, cols, vals):
        return cost + cols * 1e-3  # equal score: the lower GPU index (scores are integers)

    def pick(self, state, req, cost):
        # equal scores: the node whose name sorts first (the simulator's vendored Kubernetes,
        # mental2008/kubernetes v1.20.5-minor, replaces selectHost's random choice by that "for
        # reproducibility"); the trace's node names are zero-padded, i.e. inventory order
        best = cost.min()
        if not np.isfinite(best):
            return None
        tied = np.flatnonzero(cost == best)
        return int(tied[0]) if len(tied) == 1 else int(tied[np.argmin(self._name_rank(state)[tied])])

    def _name_rank(self, state):
        if getattr(self, "_rank_for", None) is not state.inventory:
            names = [n.name for n in state.inventory.nodes]
            self._rank = np.argsort(np.argsort(np.array(names), kind="stable"), kind="stable")
            self._rank_for = state.inventory
        return self._rank
