"""Small pieces of the fragmentation policies' score cache (frag.py): the cached costs of one request
shape, distinct keys with their first occurrence, node-state digests' constants."""
from __future__ import annotations

import numpy as np

from ..slices import SliceRequest
from ..state import ClusterState

# odd 64-bit multipliers of the node-state digests (a multiply-add, wrapping)
HASH_MULT = (np.random.default_rng(20230710).integers(1, 2 ** 63, size=64, dtype=np.uint64) | np.uint64(1))


class ShapeCosts:
    """The cached costs of one request shape: per node the version last scored, the cost and the
    chosen GPU (shares), and the shape's per-GPU model mask."""

    __slots__ = ("req", "seen", "cost", "choice", "gpu_allowed")

    def __init__(self, state: ClusterState, req: SliceRequest):
        n = state.n_nodes
        self.req = req
        self.seen = np.full(n, -1, dtype=np.int64)
        self.cost = np.full(n, np.inf)
        self.choice = np.full(n, -1, dtype=np.int64)
        self.gpu_allowed = state.allowed_models(req.gpu_models)[state.gpu_model] if req.kind != "cpu" else None


def unique_first(keys: np.ndarray):
    """(index of the first occurrence of each distinct key, in key order; for each element, the
    position of its key among them): np.unique's return_index / return_inverse, without its
    general-purpose overhead (it is called for every request shape scored on all nodes)."""
    perm = keys.argsort(kind="stable")
    sk = keys[perm]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[perm] = np.cumsum(new) - 1
    return perm[new], inverse


_EARLIER: dict[int, np.ndarray] = {}


def earlier(g: int) -> np.ndarray:
    """[g, g] mask of (GPU, an earlier GPU) pairs."""
    m = _EARLIER.get(g)
    if m is None:
        m = _EARLIER[g] = np.tril(np.ones((g, g), dtype=bool), k=-1)
    return m
