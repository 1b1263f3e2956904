"""The free capacity of the pool as numpy arrays, so placement can look at every node at once.

Rows are nodes in inventory order, columns GPU positions (padded to the largest node).
``gpu_free`` is the free milli-GPU of each GPU usable for whole/share slices (-1 = no GPU there, or a
MIG-enabled GPU, which only takes MIG instances: those are tracked per GPU as a bitmask of memory slices).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .assignment import Assignment
from .inventory import Inventory
from .models import gpu_model
from .slices import SliceRequest

UNKNOWN_MEMORY = 1 << 40  # GPUs of unknown memory never run out of it


@dataclass(frozen=True)
class Placement:
    """A policy's choice: node row, GPU columns, and for MIG (gpu column, profile, start slot)."""

    node: int
    gpus: tuple[int, ...] = ()
    mig: tuple[int, str, int] | None = None


class ClusterState:
    """Free capacity of every node and GPU; changed only by :meth:`allocate` and :meth:`free`."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        nodes = inventory.nodes
        n = len(nodes)
        g = max([len(x.gpus) for x in nodes] + [1])
        self.model_names = inventory.models
        self.model_id = {m: i for i, m in enumerate(self.model_names)}
        self.cpu_cap = np.array([x.cpu_milli for x in nodes], dtype=np.int64)
        self.mem_cap = np.array([x.memory_mib for x in nodes], dtype=np.int64)
        self.healthy = np.array([x.healthy for x in nodes], dtype=bool)
        self.gpu_model = np.full((n, g), len(self.model_names), dtype=np.int64)  # pad = extra id
        self.gpu_cap = np.full((n, g), -1, dtype=np.int64)
        self.gpu_mem_cap = np.zeros((n, g), dtype=np.int64)
        self.mig_gpu = np.zeros((n, g), dtype=bool)
        for i, node in enumerate(nodes):
            for j, gpu in enumerate(node.gpus):
                self.gpu_model[i, j] = self.model_id[gpu.model]
                self.mig_gpu[i, j] = gpu.mig_enabled
                self.gpu_cap[i, j] = -1 if gpu.mig_enabled else 1000
                self.gpu_mem_cap[i, j] = gpu.memory_mib or UNKNOWN_MEMORY
        self.gpu_exists = self.gpu_model < len(self.model_names)
        # The model of a node's first GPU (nodes are homogeneous in practice; used by fragmentation).
        self.node_model = self.gpu_model[:, 0].copy()
        self.gpu_count = self.gpu_exists.sum(1)
        self.cpu_free = self.cpu_cap.copy()
        self.mem_free = self.mem_cap.copy()
        self.gpu_free = self.gpu_cap.copy()
        self.gpu_mem_free = self.gpu_mem_cap.copy()
        self.mig_used: dict[tuple[int, int], int] = {}
        self.mig_counts: dict[tuple[int, int], dict[str, int]] = {}
        self.version = np.zeros(n, dtype=np.int64)  # bumped on every change of a node
        self._allowed_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._allowed_gpus: dict[tuple[str, ...], np.ndarray] = {}  # per GPU, by gpu_models

    # ---- shape ---------------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return len(self.cpu_cap)

    @property
    def total_gpus(self) -> int:
        return int(self.gpu_exists.sum())

    def copy(self) -> "ClusterState":
        new = object.__new__(ClusterState)
        new.__dict__.update(self.__dict__)
        for name in ("cpu_free", "mem_free", "gpu_free", "gpu_mem_free", "version", "healthy"):
            setattr(new, name, getattr(self, name).copy())
        new.mig_used = dict(self.mig_used)
        new.mig_counts = {k: dict(v) for k, v in self.mig_counts.items()}
        new._allowed_cache = self._allowed_cache
        new._allowed_gpus = self._allowed_gpus
        return new

    def allowed_models(self, models: tuple[str, ...]) -> np.ndarray:
        """Bool per model id (plus the pad id, always False): may a request restricted to ``models`` use it?"""
        got = self._allowed_cache.get(models)
        if got is None:
            got = np.zeros(len(self.model_names) + 1, dtype=bool)
            if models:
                for m in models:
                    if m in self.model_id:
                        got[self.model_id[m]] = True
            else:
                got[: len(self.model_names)] = True
            self._allowed_cache[models] = got
        return got

    # ---- what fits ------------------------------------------------------------------------------
    def node_fits(self, req: SliceRequest) -> np.ndarray:
        """Nodes with enough free CPU and memory (and healthy)."""
        return (self.cpu_free >= req.cpu_milli) & (self.mem_free >= req.memory_mib) & self.healthy

    def gpu_fits(self, req: SliceRequest) -> np.ndarray:
        """Per GPU: can it host one GPU's worth of ``req`` (a whole GPU or the share)?"""
        allowed = self._allowed_gpus.get(req.gpu_models)
        if allowed is None:
            allowed = self._allowed_gpus[req.gpu_models] = self.allowed_models(req.gpu_models)[self.gpu_model]
        if req.kind == "whole":
            return allowed & (self.gpu_free == 1000)
        need = req.gpu_milli
        ok = allowed & (self.gpu_free >= need)
        if req.gpu_mem_mib:
            ok &= self.gpu_mem_free >= req.gpu_mem_mib
        return ok

    def feasible(self, req: SliceRequest) -> tuple[np.ndarray, np.ndarray | None]:
        """(nodes where ``req`` fits, per-GPU fit mask or None for CPU-only / MIG requests)."""
        ok = self.node_fits(req)
        if req.kind == "cpu":
            return ok, None
        if req.kind == "mig":
            models = self.allowed_models(tuple(req.mig_models()))
            has_mig = (self.mig_gpu & models[self.gpu_model]).any(1)
            return ok & has_mig, None
        gpu_ok = self.gpu_fits(req)
        need = req.gpus if req.kind == "whole" else 1
        return ok & (gpu_ok.sum(1) >= need), gpu_ok

    def feasible_rows(self, req: SliceRequest, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`feasible` restricted to node ``rows`` (whole/share/CPU requests)."""
        ok = (self.cpu_free[rows] >= req.cpu_milli) & (self.mem_free[rows] >= req.memory_mib) & self.healthy[rows]
        if req.kind == "cpu":
            return ok, None
        allowed = self._allowed_gpus.get(req.gpu_models)
        if allowed is None:
            allowed = self._allowed_gpus[req.gpu_models] = self.allowed_models(req.gpu_models)[self.gpu_model]
        free = self.gpu_free[rows]
        if req.kind == "whole":
            gpu_ok = allowed[rows] & (free == 1000)
            need = req.gpus
        else:
            gpu_ok = allowed[rows] & (free >= req.gpu_milli)
            if req.gpu_mem_mib:
                gpu_ok &= self.gpu_mem_free[rows] >= req.gpu_mem_mib
            need = 1
        return ok & (gpu_ok.sum(1) >= need), gpu_ok

    def mig_starts(self, node: int, gpu: int, profile: str) -> list[int]:
        """Legal start slots for ``profile`` on a MIG-enabled GPU given what is placed there."""
        model = gpu_model(self.model_names[self.gpu_model[node, gpu]])
        if not self.mig_gpu[node, gpu] or model.mig is None or profile not in model.mig.profiles:
            return []
        return model.mig.legal_starts(self.mig_used.get((node, gpu), 0), self.mig_counts.get((node, gpu), {}),
                                      profile)

    def count_fits(self, req: SliceRequest) -> int:
        """How many more of ``req`` fit the free capacity (each node counted on its own)."""
        ok = self.node_fits(req)
        per_node = np.full(self.n_nodes, 1 << 30, dtype=np.int64)
        if req.cpu_milli:
            per_node = np.minimum(per_node, self.cpu_free // req.cpu_milli)
        if req.memory_mib:
            per_node = np.minimum(per_node, self.mem_free // req.memory_mib)
        if req.kind == "cpu":
            if not req.cpu_milli and not req.memory_mib:
                return int(ok.sum()) * 1000
        elif req.kind == "mig":
            count = np.zeros(self.n_nodes, dtype=np.int64)
            for i in np.flatnonzero(ok):
                for g in np.flatnonzero(self.mig_gpu[i]):
                    count[i] += self._mig_fits(int(i), int(g), req.mig_profile)
            per_node = np.minimum(per_node, count)
        else:
            gpu_ok = self.gpu_fits(req)
            if req.kind == "whole":
                per_node = np.minimum(per_node, gpu_ok.sum(1) // req.gpus)
            else:
                k = np.where(gpu_ok, np.maximum(self.gpu_free, 0) // req.gpu_milli, 0)
                if req.gpu_mem_mib:
                    k = np.minimum(k, np.where(gpu_ok, self.gpu_mem_free // req.gpu_mem_mib, 0))
                per_node = np.minimum(per_node, k.sum(1))
        return int(np.where(ok, per_node, 0).sum())

    def _mig_fits(self, node: int, gpu: int, profile: str) -> int:
        """How many more instances of ``profile`` the MIG GPU takes, placed at the lowest legal slots."""
        spec = gpu_model(self.model_names[self.gpu_model[node, gpu]]).mig
        if spec is None or profile not in spec.profiles:
            return 0
        used, counts, n = self.mig_used.get((node, gpu), 0), dict(self.mig_counts.get((node, gpu), {})), 0
        while starts := spec.legal_starts(used, counts, profile):
            used |= spec.profile(profile).mask(starts[0])
            counts[profile] = counts.get(profile, 0) + 1
            n += 1
        return n

    # ---- changes --------------------------------------------------------------------------------
    def allocate(self, req: SliceRequest, p: Placement) -> Assignment:
        """Take the capacity of ``req`` at ``p``; raises ValueError if it does not fit (state unchanged)."""
        i = p.node
        if self.cpu_free[i] < req.cpu_milli or self.mem_free[i] < req.memory_mib:
            raise ValueError(f"{req} does not fit the CPU/memory of node {i}")
        name = self.inventory.nodes[i].name
        if req.kind == "mig":
            g, prof, start = p.mig
            if start not in self.mig_starts(i, g, prof):
                raise ValueError(f"MIG {prof} at slot {start} is not legal on node {name} GPU {g}")
            mask = gpu_model(self.model_names[self.gpu_model[i, g]]).mig.profile(prof).mask(start)
            self.mig_used[(i, g)] = self.mig_used.get((i, g), 0) | mask
            counts = self.mig_counts.setdefault((i, g), {})
            counts[prof] = counts.get(prof, 0) + 1
            a = Assignment(name, (g,), 0, (g, prof, start))
        else:
            gpus = tuple(p.gpus)
            if req.kind == "whole":
                if len(gpus) != req.gpus or len(set(gpus)) != len(gpus) or any(self.gpu_free[i, g] != 1000 for g in gpus):
                    raise ValueError(f"GPUs {gpus} of node {name} are not {req.gpus} free whole GPUs")
                for g in gpus:
                    self.gpu_free[i, g] = 0
                    self.gpu_mem_free[i, g] = 0
                a = Assignment(name, gpus, 1000)
            elif req.kind == "share":
                if len(gpus) != 1:
                    raise ValueError("a share uses exactly one GPU")
                g = gpus[0]
                if self.gpu_free[i, g] < req.gpu_milli or (req.gpu_mem_mib and self.gpu_mem_free[i, g] < req.gpu_mem_mib):
                    raise ValueError(f"share {req.gpu_milli} does not fit GPU {g} of node {name}")
                self.gpu_free[i, g] -= req.gpu_milli
                if req.gpu_mem_mib:
                    self.gpu_mem_free[i, g] -= req.gpu_mem_mib
                a = Assignment(name, gpus, req.gpu_milli, None, req.gpu_mem_mib)
            else:
                a = Assignment(name)
        self.cpu_free[i] -= req.cpu_milli
        self.mem_free[i] -= req.memory_mib
        self.version[i] += 1
        return a

    def free(self, req: SliceRequest, a: Assignment) -> None:
        """Give back what :meth:`allocate` took (or what a restored assignment holds)."""
        i = self.inventory.by_name[a.node]
        if a.mig:
            g, prof, start = a.mig
            mask = gpu_model(self.model_names[self.gpu_model[i, g]]).mig.profile(prof).mask(start)
            self.mig_used[(i, g)] = self.mig_used.get((i, g), 0) & ~mask
            self.mig_counts[(i, g)][prof] -= 1
        elif a.gpu_indices:
            for g in a.gpu_indices:
                self.gpu_free[i, g] = min(1000, self.gpu_free[i, g] + a.gpu_milli)
                if a.gpu_milli >= 1000:
                    self.gpu_mem_free[i, g] = self.gpu_mem_cap[i, g]
                elif a.gpu_mem_mib:
                    self.gpu_mem_free[i, g] += a.gpu_mem_mib
        self.cpu_free[i] += req.cpu_milli
        self.mem_free[i] += req.memory_mib
        self.version[i] += 1

    def take(self, req: SliceRequest, a: Assignment) -> None:
        """Re-take a known assignment (restore after a restart); raises ValueError if it conflicts."""
        i = self.inventory.by_name.get(a.node)
        if i is None:
            raise ValueError(f"node {a.node!r} is not in the inventory")
        n_gpus = len(self.inventory.nodes[i].gpus)
        for g in tuple(a.gpu_indices) + ((a.mig[0],) if a.mig else ()):
            # checked here: numpy would read a negative index from the end and a padded column as "busy"
            if not isinstance(g, (int, np.integer)) or not 0 <= g < n_gpus:
                raise ValueError(f"node {a.node!r} has no GPU {g} (it has {n_gpus})")
        self.allocate(req, Placement(i, a.gpu_indices, a.mig))

    # ---- figures --------------------------------------------------------------------------------
    def allocated_gpu_milli(self) -> int:
        """Milli-GPU in use on non-MIG GPUs plus MIG instances by compute share."""
        used = int(np.where(self.gpu_cap > 0, self.gpu_cap - self.gpu_free, 0).sum())
        for (i, g), counts in self.mig_counts.items():
            spec = gpu_model(self.model_names[self.gpu_model[i, g]]).mig
            used += sum(spec.milli(p) * c for p, c in counts.items())
        return used


def split_restorable(inventory: Inventory, running: list) -> tuple[list, list]:
    """``[(Workload, Assignment)]`` -> (restorable ``[(w, a)]``, stale ``[(w, a, reason)]``).

    Each is taken, in order, into an empty state of ``inventory``: one whose node or GPU is gone from the
    inventory, or that conflicts with those before it, is stale (the caller marks it and requeues or fails
    it), so that one bad row cannot make ``Scheduler.restore`` refuse the whole running set."""
    state = ClusterState(inventory)
    ok, stale = [], []
    for w, a in running:
        if isinstance(a, dict):
            a = Assignment.from_dict(a)
        try:
            state.take(w.request, a)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            stale.append((w, a, str(e)))
        else:
            ok.append((w, a))
    return ok, stale
