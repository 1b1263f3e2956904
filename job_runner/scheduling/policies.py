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


_HASH_MULT = (np.random.default_rng(20230710).integers(1, 2 ** 63, size=64, dtype=np.uint64) | np.uint64(1))


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

    def __init__(self, target: TargetWorkload | None = None, seed: int = 0):
        # A target given here is fixed (the simulator's offline knowledge); without one, the target is
        # learned online from the shapes the scheduler observes.
        self._learn = target is None
        self.target = target or TargetWorkload.from_requests([])
        self._rng = np.random.default_rng(seed)
        self._cache: dict = {}
        self._state_id = None
        self._frag_now = None
        self._frag_version = None
        self._allowed: dict = {}
        self._seen_shapes: Counter = Counter()
        self._shapes_since_target = 0
        self._target_dirty = True

    def set_target(self, target: TargetWorkload) -> None:
        self.target = target
        self._cache.clear()
        self._state_id = None

    def observe(self, req: SliceRequest) -> None:
        if not self._learn:
            return
        self._seen_shapes[req] += 1
        self._shapes_since_target += 1
        # refresh after 16 new shapes, or 10% of all seen, whichever is more: cheap and stable
        if self._shapes_since_target >= max(16, sum(self._seen_shapes.values()) // 10):
            self._target_dirty = True

    def state_replaced(self) -> None:
        self._state_id = None

    def _refresh_target(self) -> None:
        if self._target_dirty and self._seen_shapes:
            reqs = list(self._seen_shapes.elements())
            self.set_target(TargetWorkload.from_requests(reqs, top=0.95, max_classes=32))
            self._target_dirty = False
            self._shapes_since_target = 0

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

    def _frag_rows(self, state: ClusterState, cpu, mem, free, model) -> np.ndarray:
        """:meth:`fragmentation` of many rows, computed once per distinct node state when there are
        many (an empty cluster has a handful of distinct node states among a thousand nodes)."""
        if len(cpu) <= 64:
            return self.fragmentation(state, cpu, mem, free, model)
        key = np.concatenate([cpu[:, None], mem[:, None], np.sort(free, axis=1), model[:, None]], axis=1)
        # rows hashed to one int64 (multiply-add with odd 64-bit constants, wrapping): np.unique on
        # one column is far faster than on rows; a collision (~n^2/2^64) would only mis-score a node
        digest = (key.astype(np.uint64) * _HASH_MULT[: key.shape[1]]).sum(axis=1)
        _, first, inverse = np.unique(digest, return_index=True, return_inverse=True)
        uniq = key[first]
        frag = self.fragmentation(state, uniq[:, 0], uniq[:, 1], uniq[:, 2:-1], uniq[:, -1])
        return frag[inverse.reshape(-1)]

    def _sync(self, state: ClusterState):
        """Reset the caches when the policy is pointed at another state object."""
        if self._state_id != id(state) or self._frag_now is None:
            self._state_id = id(state)
            self._allowed = {}
            self._cache = {}
            self._frag_now = self._frag_rows(state, state.cpu_free, state.mem_free, state.gpu_free,
                                             state.node_model)
            self._frag_version = state.version.copy()

    def deltas(self, state: ClusterState, req: SliceRequest, nodes: np.ndarray, gpu_ok_rows):
        """(fragmentation increase, chosen GPU or -1) for placing ``req`` on each of ``nodes``
        (``gpu_ok_rows``: the per-GPU fit mask of those nodes).

        The nodes' current fragmentation is refreshed in the same vectorised call when they changed."""
        cpu = state.cpu_free[nodes] - req.cpu_milli
        mem = state.mem_free[nodes] - req.memory_mib
        if req.kind == "cpu" or req.kind == "whole":
            rows = np.arange(len(nodes))
            cols = None
            free = state.gpu_free[nodes].copy()
            if req.kind == "whole":
                ok = gpu_ok_rows
                take = ok & (np.cumsum(ok, axis=1) <= req.gpus)
                free[take] = 0
        else:
            # share: one candidate per distinct free value among the fitting GPUs of each node
            fr = np.where(gpu_ok_rows, state.gpu_free[nodes], -1)
            order = np.argsort(fr, axis=1, kind="stable")
            sv = np.take_along_axis(fr, order, axis=1)
            keep = sv >= 0
            keep[:, 1:] &= sv[:, 1:] != sv[:, :-1]
            rows, j = np.nonzero(keep)
            cols, vals = order[rows, j], sv[rows, j]
            free = state.gpu_free[nodes[rows]].copy()
            free[np.arange(len(rows)), cols] -= req.gpu_milli
            cpu, mem = cpu[rows], mem[rows]
        stale = nodes[self._frag_version[nodes] != state.version[nodes]]
        n_after = len(rows)
        if len(stale):
            cpu = np.concatenate([cpu, state.cpu_free[stale]])
            mem = np.concatenate([mem, state.mem_free[stale]])
            free = np.concatenate([free, state.gpu_free[stale]])
        model = state.node_model[np.concatenate([nodes[rows], stale])]
        frag = self._frag_rows(state, cpu, mem, free, model)
        if len(stale):
            self._frag_now[stale] = frag[n_after:]
            self._frag_version[stale] = state.version[stale]
        # rounded so that equal increases compare equal whatever the batch's floating-point order
        delta = np.round(frag[:n_after] - self._frag_now[nodes[rows]], 3)
        if cols is None:
            return delta, np.full(len(nodes), -1)
        # the least increase per node (ties: the GPU with least free, i.e. tightest); deltas are
        # rounded to 1e-3, so adding free/1e7 (< 1e-4) orders ties without reordering increases
        table = np.full((len(nodes), state.gpu_free.shape[1]), np.inf)
        table[rows, cols] = delta + vals * 1e-7
        choice = np.argmin(table, axis=1)
        best = np.round(table[np.arange(len(nodes)), choice], 3)
        return best, choice

    def node_scores(self, state: ClusterState, req: SliceRequest):
        """Fragmentation increase per node (inf where it does not fit) and the GPU chosen there.
        Only nodes that changed since this request shape was last scored are looked at."""
        self._refresh_target()
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
            ok, gpu_ok = state.feasible_rows(req, stale)
            fit = stale[ok]
            delta[stale] = np.inf
            if len(fit):
                d, c = self.deltas(state, req, fit, gpu_ok[ok] if gpu_ok is not None else None)
                delta[fit] = d
                choice[fit] = c
            seen_version[stale] = state.version[stale]
        return delta, choice

    def place(self, state: ClusterState, req: SliceRequest) -> Placement | None:
        if req.kind == "mig":
            return super().place(state, req)
        delta, choice = self.node_scores(state, req)
        i = self.pick(state, req, delta, None)
        if i is None:
            return None
        if req.kind == "cpu":
            return Placement(i)
        if req.kind == "whole":
            _, gpu_ok = state.feasible_rows(req, np.array([i]))
            return Placement(i, self.whole_gpus(gpu_ok[0], req.gpus))
        return Placement(i, (int(choice[i]),))

    def pick(self, state, req, delta, node_ok) -> int | None:
        # equal increases: a seeded random one, as the Kubernetes scheduler the paper's simulator
        # builds on picks among equally scored nodes
        best = delta.min()
        if not np.isfinite(best):
            return None
        tied = np.flatnonzero(delta == best)
        return int(tied[self._rng.integers(len(tied))]) if len(tied) > 1 else int(tied[0])


class PackedFGD(FGD):
    """The product policy ("default"): FGD's fragmentation plus the capacity a node would waste if it
    were filled with each task class, ties to the fullest node.

    1. *Capacity waste* of a node for class m: its free GPU milli minus what instances of m could use
       there, the number of instances limited by GPU (whole free GPUs, or per-GPU room for shares),
       CPU and memory alike. FGD's F_n(m) is all-or-nothing in CPU and memory (one instance fits => no
       CPU fragment) and blind to the remainder a share leaves on a GPU that still fits it; the waste
       term sees a node whose CPU runs out before its GPUs do, and a 0.47 share that spoils a GPU for a
       second 0.47. The score is ``fgd_weight`` x FGD + waste, both weighted by class popularity x
       (GPU ask) ** ``demand_exponent`` (< 0 favours the many small classes a little).
    2. Nodes whose score increase is equal (within ``tolerance`` milli) are ordered best-fit style: the
       fullest node wins, which keeps empty nodes for multi-GPU and large-CPU tasks.
    """

    name = "default"

    def __init__(self, target=None, demand_exponent: float = -0.25, fgd_weight: float = 1.0,
                 tolerance: float = 1e-6):
        self.demand_exponent = demand_exponent
        self.fgd_weight = fgd_weight
        self.tolerance = tolerance
        super().__init__(self._reweight(target) if target is not None else None)

    def set_target(self, target: TargetWorkload) -> None:
        super().set_target(self._reweight(target))

    def _reweight(self, t: TargetWorkload) -> TargetWorkload:
        ask = np.where(t.share, t.milli, np.where(t.whole, t.ngpu * 1000, 0)).astype(np.float64)
        w = t.weight * np.maximum(ask, 100.0) ** self.demand_exponent
        return TargetWorkload(t.cpu, t.mem, t.share, t.whole, t.milli, t.ngpu, t.models, w / w.sum())

    def fragmentation(self, state, cpu, mem, free, model):
        k = self._tables(state)
        n = k["n"]
        # one gather from a per-free-value table gives, per class: share instances, FGD's partial
        # sums; and the node's free total and number of whole free GPUs
        per_gpu = k["lut"][np.maximum(free, 0)].sum(1)  # [H, 2K+2]
        share_inst, partial = per_gpu[:, :n], per_gpu[:, n:2 * n]
        tot = per_gpu[:, 2 * n:2 * n + 1]
        gpu_inst = share_inst + k["whole_lut"][per_gpu[:, -1].astype(np.int64)]
        cm = np.minimum(cpu[:, None] * k["inv_cpu"], mem[:, None] * k["inv_mem"])
        inst = np.minimum(np.floor(cm + 1e-9), gpu_inst) * k["allowed"][model]
        waste = tot - np.minimum(inst * k["per"], tot)
        fgd = np.where(inst == 0, tot, partial)
        return waste @ k["weight"] + fgd @ k["fgd_weight"]

    def _tables(self, state):
        key = id(state.model_names)
        tables = self._allowed.get(key)
        if tables is None:
            t = self.target
            big = 1e12
            v = np.arange(1001, dtype=np.float64)[:, None]
            milli = np.maximum(t.milli, 1)
            thresh = np.where(t.share, t.milli, np.where(t.whole, 1000, 0))
            lut = np.concatenate([np.where(t.share, np.floor(v / milli + 1e-9), 0),
                                  np.where(v < thresh, v, 0), v, (v == 1000)], axis=1)
            cpu_only = ~(t.share | t.whole)
            full = np.arange(state.gpu_free.shape[1] + 1, dtype=np.float64)[:, None]
            whole_lut = np.where(t.whole, np.floor(full / np.maximum(t.ngpu, 1)), np.where(cpu_only, big, 0))
            with np.errstate(divide="ignore"):
                inv_cpu = np.where(t.cpu > 0, 1.0 / np.maximum(t.cpu, 1), 0.0)
                inv_mem = np.where(t.mem > 0, 1.0 / np.maximum(t.mem, 1), 0.0)
            # a class asking no CPU (memory) is never limited by it: a huge multiplier does that
            inv_cpu = np.where(t.cpu > 0, inv_cpu, big)
            inv_mem = np.where(t.mem > 0, inv_mem, big)
            tables = {
                "n": len(t.weight), "lut": lut, "whole_lut": whole_lut,
                "allowed": np.stack([state.allowed_models(m) for m in t.models], axis=1).astype(np.float64),
                "inv_cpu": inv_cpu, "inv_mem": inv_mem,
                # CPU-only classes: one instance that fits makes the waste 0, else all free GPU
                "per": np.where(t.share, t.milli, np.where(t.whole, t.ngpu * 1000, big)).astype(np.float64),
                "weight": t.weight, "fgd_weight": self.fgd_weight * t.weight,
            }
            self._allowed[key] = tables
        return tables

    def pick(self, state, req, delta, node_ok):
        best = delta.min()
        if not np.isfinite(best):
            return None
        tied = np.flatnonzero(delta <= best + self.tolerance)
        if len(tied) == 1:
            return int(tied[0])
        free_gpu = np.maximum(state.gpu_free[tied], 0).sum(1)
        cpu_share = state.cpu_free[tied] / np.maximum(state.cpu_cap[tied], 1)
        return int(tied[np.argmin(free_gpu + cpu_share)])


POLICIES = {"first-fit": FirstFit, "best-fit": BestFit, "fgd": FGD, "default": PackedFGD}


def make_policy(name: str, target: TargetWorkload | None = None, seed: int = 0) -> PlacementPolicy:
    """A policy by name; fragmentation-aware ones take the target workload (and FGD a seed for ties)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown placement policy {name!r}; choose from {sorted(POLICIES)}") from None
    if cls is FGD:
        return FGD(target, seed=seed)
    return cls(target) if issubclass(cls, FGD) else cls()
