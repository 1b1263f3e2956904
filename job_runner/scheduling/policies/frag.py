"""Machinery shared by the fragmentation-aware policies (``fgd`` in fgd.py, ``default`` in packed.py).

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
from .cache import HASH_MULT, ShapeCosts, earlier, unique_first
from .target import OnlineTarget, TargetWorkload


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
        self._state_ref = None
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
        self._state_ref = None

    def prepare_target(self, target: TargetWorkload) -> TargetWorkload:
        return target

    def observe(self, req: SliceRequest) -> None:
        if self._online is not None and self._online.observe(req):
            self._dirty = True

    def state_replaced(self) -> None:
        self._state_ref = None

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
            allowed = np.stack([state.allowed_models(m) for m in t.models], axis=1)  # [M+1, K]
            self._tables = self.build_tables(state, t, allowed)
            self._tables["allowed"] = allowed
            lut = self._tables["lut"]
            self._tables["whole_change"] = lut[0] - lut[1000]  # a free GPU taken whole
            self._tables_key = key
        return self._tables

    def build_tables(self, state: ClusterState, t: TargetWorkload, allowed: np.ndarray) -> dict:
        """The subclass's tables for target ``t``; ``allowed`` [models + 1, K]: may class k use a model."""
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
        # take() on axis 0: row gathers by method are several times cheaper than fancy indexing on
        # the small arrays scored per decision (the same holds for the other take() calls here)
        return self.tables(state)["lut"].take(np.maximum(free, 0), axis=0).sum(1)

    def cost(self, delta: np.ndarray) -> np.ndarray:
        """Cost of placements that raise fragmentation by ``delta`` (least wins)."""
        return delta.round(3)  # equal increases compare equal whatever the batch's float order

    def gpu_key(self, cost, cols, vals) -> np.ndarray:
        """Order of a node's candidate GPUs for a share (least wins); cost first."""
        return cost + vals * 1e-7  # equal cost: the GPU with least free (costs are multiples of 1e-3)

    def pick(self, state: ClusterState, req: SliceRequest, cost: np.ndarray) -> int | None:  # pragma: no cover
        raise NotImplementedError

    # ---- scoring ------------------------------------------------------------------------------
    def _frag_rows(self, state: ClusterState, rows: np.ndarray):
        """(:meth:`fragmentation`, table sums) of the current states of nodes ``rows``, computed once
        per distinct node state when there are many (an empty cluster has a handful of distinct node
        states among a thousand nodes)."""
        free = state.gpu_free[rows]
        if len(rows) <= 64:
            sums = self._gpu_sums(state, free)
            return self.frag_sums(state, state.cpu_free[rows], state.mem_free[rows], sums, state.node_model[rows]), sums
        # distinct digests are far faster to find than distinct rows; the digests are kept per node
        # version, so the after-states scored next reuse them
        first, inverse = unique_first(self._digests(state, rows))
        u = rows[first]
        sums = self._gpu_sums(state, free[first])
        frag = self.frag_sums(state, state.cpu_free[u], state.mem_free[u], sums, state.node_model[u])
        return frag[inverse], sums[inverse]

    def _sync(self, state: ClusterState):
        """Reset the caches when the policy is pointed at another state object (held, so that a new
        state can never pass for the old one by reusing its id)."""
        self._state_ref = state
        self._cache = {}
        self._digest_now = np.zeros(state.n_nodes, dtype=np.uint64)
        self._digest_version = np.full(state.n_nodes, -1, dtype=np.int64)
        self._ndigest_now = np.zeros(state.n_nodes, dtype=np.uint64)
        self._ndigest_version = np.full(state.n_nodes, -1, dtype=np.int64)
        # the fixed part of a node's state: its GPU models in order and its health
        _, self._node_type = np.unique(np.concatenate([state.gpu_model, state.healthy[:, None]], axis=1),
                                       axis=0, return_inverse=True)
        self._node_type = self._node_type.reshape(-1)
        self._frag_now, self._sums_now = self._frag_rows(state, np.arange(state.n_nodes))
        self._frag_version = state.version.copy()

    def _score(self, state, req, nodes, ver, cpu, mem, free, gpu_ok):
        """(cost, chosen GPU or None) of placing ``req`` on each of ``nodes``, which it fits, given
        their versions ``ver``, their free CPU and memory after placing, their free milli per GPU and
        per-GPU fit mask (None for CPU-only requests).

        The nodes' current fragmentation is refreshed in the same vectorised call where they changed.
        A node after placing differs from the node now in one GPU (a share) or in k whole free GPUs:
        its table sums are the node's current sums (kept per node) plus the change of those GPUs'
        rows, so only changed nodes are summed over all their GPUs."""
        vals = None
        at = nodes
        if req.kind == "share":
            # one candidate per distinct free value among the fitting GPUs of each node: its first
            # GPU of that value (a GPU equal to one at a lower index is dropped)
            fr = np.where(gpu_ok, free, -1)
            keep = fr >= 0
            g = fr.shape[1]
            if g > 1:
                keep &= ~((fr[:, :, None] == fr[:, None, :]) & earlier(g)).any(2)
            rows, cols = keep.nonzero()
            vals = fr[keep]  # row-major, as nonzero
            if len(rows) != len(nodes):
                cpu, mem, at = cpu[rows], mem[rows], nodes[rows]
        moved = self._frag_version[nodes] != ver
        now = nodes[moved]
        n_after = len(at)
        if n_after + len(now) > 64:
            frag = self._rows_full(state, req, at, vals, cpu, mem, now)
        else:
            frag = self._rows_incremental(state, req, at, vals, cpu, mem, now, ver[moved] if len(now) else None)
        cost = self.cost(frag[:n_after] - self._frag_now[at])
        if vals is None:
            return cost, None
        key = self.gpu_key(cost, cols, vals)
        if len(nodes) == 1:
            j = int(key.argmin())  # candidates are in GPU order: equal keys go to the lower index
            return cost[j:j + 1], cols[j:j + 1]
        # per node, its candidate of least key (equal keys: the lower GPU index, as candidates are in
        # GPU order and the sort is stable); rows are ascending and every node has a candidate
        order = np.lexsort((key, rows))
        best = order[np.searchsorted(rows, np.arange(len(nodes)))]
        return cost[best], cols[best]

    def _store_now(self, state, stale, frag, sums) -> None:
        self._frag_now[stale] = frag
        self._sums_now[stale] = sums
        self._frag_version[stale] = state.version[stale]

    def _rows_full(self, state, req, at, vals, cpu, mem, stale):
        """Many rows: the after-states from the nodes' current sums, scored once per distinct
        (node state now, candidate GPU's free value): a young cluster has few distinct node states."""
        if len(stale):
            frag, sums = self._frag_rows(state, stale)
            self._store_now(state, stale, frag, sums)
        digest = self._digests(state, at)
        if vals is not None:
            digest = digest * HASH_MULT[0] + vals.astype(np.uint64)
        first, inverse = unique_first(digest)
        u = at[first]
        sums = self._after_sums(state, req, u, None if vals is None else vals[first])
        frag = self.frag_sums(state, cpu[first], mem[first], sums, state.node_model[u])
        return frag[inverse]

    def _after_sums(self, state, req, at, vals):
        """Table sums of nodes ``at`` after placing ``req`` (on the GPU of free value ``vals``)."""
        t = self.tables(state)
        sums = self._sums_now.take(at, axis=0)  # a copy: changed in place below
        if req.kind == "whole":
            sums += req.gpus * t["whole_change"]
        elif req.kind == "share":
            lut = t["lut"]
            sums += lut.take(vals - req.gpu_milli, axis=0)
            sums -= lut.take(vals, axis=0)
        return sums

    @staticmethod
    def _row_digest(cpu, mem, free, model) -> np.ndarray:
        """One uint64 per node state (cpu, mem, free per GPU in any order, model): a multiply-add
        with odd 64-bit constants, wrapping; a collision (~n^2/2^64) would only mis-score a node."""
        key = np.concatenate([cpu[:, None], mem[:, None], np.sort(free, axis=1), model[:, None]], axis=1)
        return (key.astype(np.uint64) * HASH_MULT[: key.shape[1]]).sum(axis=1)

    def _digests(self, state, at) -> np.ndarray:
        """Digests of the current states of nodes ``at``, recomputed where they changed."""
        moved = at[self._digest_version[at] != state.version[at]]
        if len(moved):
            self._digest_now[moved] = self._row_digest(state.cpu_free[moved], state.mem_free[moved],
                                                       state.gpu_free[moved], state.node_model[moved])
            self._digest_version[moved] = state.version[moved]
        return self._digest_now[at]

    def _rows_incremental(self, state, req, at, vals, cpu, mem, now, now_ver):
        """Few rows: the changed nodes (``now``, at versions ``now_ver``) summed over their GPUs, the
        after-states from the nodes' sums; one vectorised call scores both."""
        if len(now):  # first: the after-states are the changed nodes' new sums plus the change
            s_now = self._gpu_sums(state, state.gpu_free[now])
            self._sums_now[now] = s_now
        sums = self._after_sums(state, req, at, vals)
        if len(now):
            cpu = np.concatenate((cpu, state.cpu_free[now]))
            mem = np.concatenate((mem, state.mem_free[now]))
            frag = self.frag_sums(state, cpu, mem, np.concatenate((sums, s_now)),
                                  state.node_model[np.concatenate((at, now))])
            self._frag_now[now] = frag[len(at):]
            self._frag_version[now] = now_ver
            return frag
        return self.frag_sums(state, cpu, mem, sums, state.node_model[at])

    def _key(self, req: SliceRequest) -> tuple:
        s = (req.kind, req.gpus, req.gpu_milli, req.gpu_mem_mib, req.gpu_models, req.cpu_milli)
        return s + (req.memory_mib,) if self.memory_in_score else s

    def _shape(self, state: ClusterState, req: SliceRequest) -> ShapeCosts:
        # scored as if asking no memory when memory does not enter the score: one entry serves
        # every memory ask, and memory is checked in place()
        scored = req if self.memory_in_score or not req.memory_mib else dataclasses.replace(req, memory_mib=0)
        return ShapeCosts(state, scored)

    def node_costs(self, state: ClusterState, req: SliceRequest):
        """Cost per node (inf where it does not fit) and the GPU chosen there. Only nodes that
        changed since this request shape was last scored are looked at."""
        if self._dirty:
            self._refresh_target()
        if self._state_ref is not state or self._frag_now is None:
            self._sync(state)
        key = self._key(req)
        e = self._cache.get(key)
        if e is None:
            e = self._cache[key] = self._shape(state, req)
        stale = (e.seen != state.version).nonzero()[0]
        if len(stale):
            self._rescore(state, e, stale)
        if not self.memory_in_score and req.memory_mib:
            return np.where(state.mem_free >= req.memory_mib, e.cost, np.inf), e.choice
        return e.cost, e.choice

    def _rescore(self, state: ClusterState, e: ShapeCosts, stale: np.ndarray) -> None:
        """Costs of shape ``e`` on the nodes ``stale`` (changed since it was last scored). Many
        nodes (a shape seen for the first time since the target was built) are scored once per
        distinct node state, GPU order included, so the chosen GPU carries over too: a cluster of a
        thousand nodes has a few hundred distinct states, a young one a handful."""
        ver = state.version[stale]
        e.seen[stale] = ver
        if len(stale) > 256:
            first, inverse = unique_first(self._node_digests(state, stale, ver))
            if len(first) < len(stale):
                cost, choice = self._costs(state, e, stale[first], ver[first])
                e.cost[stale] = cost[inverse]
                if choice is not None:
                    e.choice[stale] = choice[inverse]
                return
        cost, choice = self._costs(state, e, stale, ver)
        e.cost[stale] = cost
        if choice is not None:
            e.choice[stale] = choice

    def _costs(self, state: ClusterState, e: ShapeCosts, nodes: np.ndarray, ver: np.ndarray):
        """(cost per node, inf where shape ``e`` does not fit; chosen GPU per node for shares, else
        None) of ``nodes`` at versions ``ver``. The fit test is ClusterState.feasible_rows's, on the
        shape's own GPU-model mask."""
        r = e.req
        ok = state.healthy[nodes]
        cpu = state.cpu_free[nodes]
        mem = state.mem_free[nodes]
        # free CPU and memory are never negative (allocate refuses): a zero ask needs no test
        if r.cpu_milli:
            ok &= cpu >= r.cpu_milli
        if r.memory_mib:
            ok &= mem >= r.memory_mib
        free = gpu_ok = None
        if r.kind == "whole":
            free = state.gpu_free.take(nodes, axis=0)
            gpu_ok = e.gpu_allowed.take(nodes, axis=0)
            gpu_ok &= free == 1000
            ok &= (gpu_ok.sum(1) >= r.gpus) if r.gpus > 1 else gpu_ok.any(1)
        elif r.kind == "share":
            free = state.gpu_free.take(nodes, axis=0)
            gpu_ok = e.gpu_allowed.take(nodes, axis=0)
            gpu_ok &= free >= r.gpu_milli
            if r.gpu_mem_mib:
                gpu_ok &= state.gpu_mem_free.take(nodes, axis=0) >= r.gpu_mem_mib
            ok &= gpu_ok.any(1)
        if ok.all():
            return self._score(state, r, nodes, ver, cpu - r.cpu_milli, mem - r.memory_mib, free, gpu_ok)
        cost = np.empty(len(nodes))
        cost.fill(np.inf)
        choice = None
        if r.kind == "share":
            choice = np.empty(len(nodes), dtype=np.int64)
            choice.fill(-1)
        idx = ok.nonzero()[0]
        if len(idx):
            d, c = self._score(state, r, nodes[idx], ver[idx], cpu[idx] - r.cpu_milli, mem[idx] - r.memory_mib,
                               None if free is None else free.take(idx, axis=0),
                               None if gpu_ok is None else gpu_ok.take(idx, axis=0))
            cost[idx] = d
            if c is not None:
                choice[idx] = c
        return cost, choice

    def _node_digests(self, state: ClusterState, at: np.ndarray, ver: np.ndarray) -> np.ndarray:
        """Per node of ``at`` (at versions ``ver``), one uint64 of everything a shape's cost and
        chosen GPU there depend on: free CPU, memory, free milli and GPU memory per GPU *in order*,
        and the node's fixed GPU models and health (as a type id); kept per node version."""
        moved = self._ndigest_version[at] != ver
        if moved.any():
            m = at[moved]
            key = np.concatenate([state.cpu_free[m][:, None], state.mem_free[m][:, None], state.gpu_free[m],
                                  state.gpu_mem_free[m], self._node_type[m][:, None]], axis=1)
            self._ndigest_now[m] = (key.astype(np.uint64) * HASH_MULT[: key.shape[1]]).sum(axis=1)
            self._ndigest_version[m] = ver[moved]
        return self._ndigest_now[at]

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
            ok = state.allowed_models(req.gpu_models)[state.gpu_model[i]] & (state.gpu_free[i] == 1000)
            return Placement(i, tuple(ok.nonzero()[0][:req.gpus].tolist()))  # its first free GPUs
        return Placement(i, (int(choice[i]),))
