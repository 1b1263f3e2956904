"""``fgd``: Fragmentation Gradient Descent as the FGD paper's simulator runs it (:class:`FGD`)."""
from __future__ import annotations

import numpy as np

from .frag import FragmentationPolicy


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

    def build_tables(self, state, t, allowed):
        v = np.arange(1001)[:, None]
        ask = t.per_gpu_milli
        gpu_cls = ask > 0
        # per free value: [enough for the class's per-GPU ask (count), fragment if not (milli)]
        lut = np.concatenate([(v >= ask) & gpu_cls, np.where((v < ask) & gpu_cls, v, 0), v], axis=1)
        return {"lut": lut.astype(np.float64), "n": len(ask), "gpu_cls": gpu_cls,
                "need": np.where(t.share, 1, t.ngpu), "cpu": t.cpu,
                # per model: the GPU classes that may use it (the rest count all free GPU a fragment)
                "gpu_allowed": allowed & gpu_cls}

    def frag_sums(self, state, cpu, mem, per, model):
        k = self.tables(state)
        n = k["n"]
        fits, partial, total = per[:, :n], per[:, n:2 * n], per[:, 2 * n]
        ok = k["gpu_allowed"].take(model, axis=0)  # a GPU class, allowed on the node's model
        ok &= cpu[:, None] >= k["cpu"]
        ok &= fits >= k["need"]
        frag = np.where(ok, partial, total[:, None])
        return frag.dot(self.target.weight)

    def cost(self, delta):
        # Go: int64(sigmoid((before-after)/1000) * MaxNodeScore); the least cost is the highest score.
        # The increase is rounded to 1e-6 milli first: the simulator scores a node's state before and
        # after with the same arithmetic, so an unchanged fragmentation is exactly 0 (score 50); ours
        # sums rows in batches of different sizes, whose float rounding (~1e-13) would truncate 50 to 49
        x = delta.round(6)
        # -trunc((1 / (1 + exp(x / 1000))) * 100), step by step in place (same operations, no temporaries)
        x /= 1000.0
        np.exp(x, out=x)
        x += 1.0
        np.divide(1.0, x, out=x)
        x *= 100.0
        np.trunc(x, out=x)
        return np.negative(x, out=x)

    def gpu_key(self, cost, cols, vals):
        return cost + cols * 1e-3  # equal score: the lower GPU index (scores are integers)

    def pick(self, state, req, cost):
        # equal scores: the node whose name sorts first (the simulator's vendored Kubernetes,
        # mental2008/kubernetes v1.20.5-minor, replaces selectHost's random choice by that "for
        # reproducibility"); the trace's node names are zero-padded, i.e. inventory order
        best = cost[cost.argmin()]  # argmin is cheaper than min
        if best == np.inf:
            return None
        tied = (cost == best).nonzero()[0]
        return int(tied[0]) if len(tied) == 1 else int(tied[np.argmin(self._name_rank(state)[tied])])

    def _name_rank(self, state):
        if getattr(self, "_rank_for", None) is not state.inventory:
            names = [n.name for n in state.inventory.nodes]
            self._rank = np.argsort(np.argsort(np.array(names), kind="stable"), kind="stable")
            self._rank_for = state.inventory
        return self._rank
