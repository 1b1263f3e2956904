"""The product policy ``default`` (:class:`PackedFGD`)."""
from __future__ import annotations

import numpy as np

from .frag import FragmentationPolicy


class PackedFGD(FragmentationPolicy):
    """The product policy ("default"): FGD's fragmentation plus the capacity a node would waste if it
    were filled with each task class, classes weighted by popularity x scarcity, ties to the fullest
    node. Its classes are learned online (:class:`~.target.OnlineTarget`) unless a target is given.

    1. *Capacity waste* of a node for class m: its free GPU milli minus what instances of m could use
       there, the number of instances limited by GPU (whole free GPUs, or per-GPU room for shares),
       CPU and memory alike. FGD's F_n(m) is all-or-nothing in CPU and memory (one instance fits => no
       CPU fragment) and blind to the remainder a share leaves on a GPU that still fits it; the waste
       term sees a node whose CPU runs out before its GPUs do, and a 0.47 share that spoils a GPU for a
       second 0.47. The score is FGD's F + waste.
    2. *Scarcity*: a class that may use only part of the cluster's GPUs (a ``gpu_spec`` naming some
       models; k whole GPUs, which need a node with k) weighs its popularity x (all GPUs / GPUs it may
       use). A model few tasks may use but which only those tasks may use (T4-only tasks on the T4
       nodes) is then left to them: other tasks' placements there raise its fragments by more than
       elsewhere. Nothing here is fitted: both factors come from the learned classes and the inventory.
    3. Nodes whose score increase is equal are ordered best-fit style: the fullest node wins, which
       keeps empty nodes for multi-GPU and large-CPU tasks.
    """

    name = "default"
    _full_state = None  # the state _fullness() keeps figures of

    def frag_sums(self, state, cpu, mem, per_gpu, model):
        k = self.tables(state)
        n = k["n"]
        # the per-free-value table summed over the node's GPUs gives, per class: share instances,
        # FGD's partial sums; and the node's free total and number of whole free GPUs [H, 2K+2]
        share_inst, partial = per_gpu[:, :n], per_gpu[:, n:2 * n]
        tot = per_gpu[:, 2 * n:2 * n + 1]
        gpu_inst = k["whole_lut"].take(per_gpu[:, -1].astype(np.intp), axis=0)
        gpu_inst += share_inst
        # instances of each class the node's CPU and memory allow, then its GPUs and model; in place
        # and by method (the arrays are small and many: allocations and call overhead cost more than
        # the arithmetic)
        # (a class not allowed on the node's model has its CPU multiplier 0 there: no instance)
        inst = cpu[:, None] * k["inv_cpu_allowed"].take(model, axis=0)
        used = mem[:, None] * k["inv_mem"]
        np.minimum(inst, used, out=inst)
        np.add(inst, 1e-9, out=inst)
        np.floor(inst, out=inst)
        np.minimum(inst, gpu_inst, out=inst)
        # waste (tot - what instances use) + FGD's fragment (tot where no instance fits, else the
        # partial sum), summed over classes with their weights
        np.multiply(inst, k["per"], out=used)
        np.minimum(used, tot, out=used)
        rest = np.subtract(partial, used, out=used)
        np.copyto(rest, tot, where=inst == 0)
        return tot[:, 0] * k["weight_sum"] + rest.dot(k["weight"])

    def build_tables(self, state, t, allowed):
        big = 1e12
        v = np.arange(1001, dtype=np.float64)[:, None]
        milli = np.maximum(t.milli, 1)
        thresh = np.where(t.share, t.milli, np.where(t.whole, 1000, 0))
        lut = np.concatenate([np.where(t.share, np.floor(v / milli + 1e-9), 0),
                              np.where(v < thresh, v, 0), v, (v == 1000)], axis=1)
        cpu_only = ~(t.share | t.whole)
        full = np.arange(state.gpu_free.shape[1] + 1, dtype=np.float64)[:, None]
        whole_lut = np.where(t.whole, np.floor(full / np.maximum(t.ngpu, 1)), np.where(cpu_only, big, 0))
        # a class asking no CPU (memory) is never limited by it: a huge multiplier does that
        inv_cpu = np.where(t.cpu > 0, 1.0 / np.maximum(t.cpu, 1), big)
        inv_mem = np.where(t.mem > 0, 1.0 / np.maximum(t.mem, 1), big)
        # scarcity: a class that may use only some of the GPUs (some models; for k whole GPUs, nodes
        # with at least k) weighs (all GPUs / GPUs it may use) more: its fragments are capacity the
        # rest of the workload should leave to it
        plain = state.gpu_exists & ~state.mig_gpu
        per_node = plain.sum(1)
        need = np.where(t.whole, t.ngpu, 1)
        usable = np.array([(plain & allowed[state.gpu_model] & (per_node >= k)[:, None]).sum()
                           for allowed, k in zip((state.allowed_models(m) for m in t.models), need)], dtype=np.float64)
        weight = t.weight * plain.sum() / np.maximum(usable, 1)
        # no plain GPU at all (a CPU-only pool, or all MIG): scarcity says nothing, popularity alone weighs
        weight = weight / weight.sum() if weight.sum() > 0 else t.weight
        return {
            "n": len(t.weight), "lut": lut, "whole_lut": whole_lut, "inv_cpu": inv_cpu, "inv_mem": inv_mem,
            # per model: the CPU multiplier of the classes that may use it, 0 for the others (no instance)
            "inv_cpu_allowed": np.where(allowed, inv_cpu, 0.0),
            # CPU-only classes: one instance that fits makes the waste 0, else all free GPU
            "per": np.where(t.share, t.milli, np.where(t.whole, t.ngpu * 1000, big)).astype(np.float64),
            "weight": weight, "weight_sum": float(weight.sum()),
        }

    def pick(self, state, req, cost):
        best = cost[cost.argmin()]  # argmin is cheaper than min
        if best == np.inf:
            return None
        tied = (cost == best).nonzero()[0]
        if len(tied) == 1:
            return int(tied[0])
        return int(tied[np.argmin(self._fullness(state)[tied])])

    def _fullness(self, state):
        """Per node: free GPU milli + free CPU share (least = fullest), kept per node version: half
        the decisions tie hundreds of empty or equal nodes, and only the nodes placed on since the
        last pick changed."""
        if self._full_state is not state:
            self._full_state = state
            self._full = np.zeros(state.n_nodes)
            self._full_version = np.full(state.n_nodes, -1, dtype=np.int64)
        moved = (self._full_version != state.version).nonzero()[0]
        if len(moved):
            free_gpu = np.maximum(state.gpu_free[moved], 0).sum(1)
            self._full[moved] = free_gpu + state.cpu_free[moved] / np.maximum(state.cpu_cap[moved], 1)
            self._full_version[moved] = state.version[moved]
        return self._full
