"""The target workload of the fragmentation-aware policies: task classes and their popularity.

Built as the FGD paper's simulator builds its "typical pods" (``GetTypicalPods`` in
hkust-adsl/kubernetes-scheduler-simulator, pkg/utils/frag.go, with the artifact's settings
``isInvolvedCpuPods: true, podPopularityThreshold: 95, podIncreaseStep: 1``):

* a class is (CPU ask, GPU ask per GPU, number of GPUs, allowed GPU models): memory is *not* part of
  it (a class's memory is kept as the mean of its members, for policies that want it);
* CPU-only tasks are classes too;
* classes are taken most popular first (equal counts: the larger CPU, GPU, GPU count, model string
  first, as the simulator's sort does) until they cover 95% of the tasks, then renormalised.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..slices import SliceRequest

# A CPU ask of 0 counts as Kubernetes' non-zero default (100 milli), as in the simulator's classes.
DEFAULT_CPU_MILLI = 100


def class_key(r: SliceRequest) -> tuple:
    """(cpu, per-GPU milli, GPU count, models) of a non-MIG request, as the simulator's PodResource."""
    cpu = r.cpu_milli or DEFAULT_CPU_MILLI
    if r.kind == "share":
        return cpu, r.gpu_milli, 1, tuple(r.gpu_models)
    if r.kind == "whole":
        return cpu, 1000, r.gpus, tuple(r.gpu_models)
    return cpu, 0, 0, ()


@dataclass
class TargetWorkload:
    """Task classes and their popularity: what future requests are expected to look like."""

    cpu: np.ndarray  # [K] milli
    mem: np.ndarray  # [K] MiB (mean of the class's members)
    share: np.ndarray  # [K] bool: asks for part of one GPU
    whole: np.ndarray  # [K] bool: asks for whole GPUs
    milli: np.ndarray  # [K] share size (share classes)
    ngpu: np.ndarray  # [K] whole GPUs (whole classes)
    models: list  # [K] gpu_models tuples
    weight: np.ndarray  # [K] popularity, sums to 1
    keys: list | None = None  # [K] class keys (:func:`class_key`), when built from requests

    def distance(self, other: "TargetWorkload") -> float:
        """Total-variation distance between the class mixes of two targets built from requests (1.0
        when either lacks keys)."""
        if self.keys is None or other.keys is None:
            return 1.0
        a = dict(zip(self.keys, self.weight))
        b = dict(zip(other.keys, other.weight))
        return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in a.keys() | b.keys())

    @property
    def per_gpu_milli(self) -> np.ndarray:
        """GPU milli asked per GPU: the share, 1000 for whole GPUs, 0 for CPU-only classes."""
        return np.where(self.share, self.milli, np.where(self.whole, 1000, 0))

    @classmethod
    def from_requests(cls, requests, top: float = 0.95) -> "TargetWorkload":
        counts: Counter = Counter()
        mem: Counter = Counter()
        for r in requests:
            if r.kind == "mig":
                continue
            k = class_key(r)
            counts[k] += 1
            mem[k] += r.memory_mib
        return cls.from_counts(counts, mem, top)

    @classmethod
    def from_counts(cls, counts: Counter, mem_sum: Counter | None = None, top: float = 0.95) -> "TargetWorkload":
        """Classes from ``{class_key: count}`` (and ``{class_key: summed memory}``)."""
        if not counts:
            counts = Counter({(DEFAULT_CPU_MILLI, 1000, 1, ()): 1})
        total = sum(counts.values())
        # most popular first; equal counts: larger (cpu, milli, n, models) first (the simulator's
        # sort.Reverse of Less on (MilliCpu, MilliGpu, GpuNumber, GpuType))
        ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], "|".join(kv[0][3])),
                         reverse=True)
        rows, acc = [], 0
        for key, c in ordered:
            rows.append((key, c))
            acc += c
            if acc >= top * total:
                break
        w = np.array([c for _, c in rows], dtype=np.float64)
        milli = np.array([k[1] for k, _ in rows], dtype=np.int64)
        n = np.array([k[2] for k, _ in rows], dtype=np.int64)
        share = (n == 1) & (milli > 0) & (milli < 1000)
        whole = (n >= 1) & (milli >= 1000)
        return cls(
            cpu=np.array([k[0] for k, _ in rows], dtype=np.int64),
            mem=np.array([(mem_sum or {}).get(k, 0) // max(c, 1) for k, c in rows], dtype=np.int64),
            share=share, whole=whole,
            milli=np.where(share, milli, 0), ngpu=np.where(whole, n, 0),
            models=[k[3] for k, _ in rows],
            weight=w / w.sum(),
            keys=[k for k, _ in rows],
        )


class OnlineTarget:
    """The target learned from the requests seen so far (``observe``), as the product learns it from
    submitted shapes. A rebuild is considered when the number of requests seen has doubled since the
    last one (1, 2, 4, ...), and made only if the class mix moved by at least ``min_change`` (total
    variation): the mix of a workload settles quickly, and every rebuild costs a re-scoring of the
    cluster."""

    min_change = 0.05

    def __init__(self, first: int = 1):
        self.counts: Counter = Counter()
        self.mem: Counter = Counter()
        self.seen = 0
        self._next = first

    def observe(self, r: SliceRequest) -> bool:
        """Count ``r``; True when the target should be rebuilt now."""
        if r.kind == "mig":
            return False
        k = class_key(r)
        self.counts[k] += 1
        self.mem[k] += r.memory_mib
        self.seen += 1
        if self.seen >= self._next:
            self._next = 2 * self.seen
            return True
        return False

    def target(self, current: TargetWorkload | None = None) -> TargetWorkload | None:
        """The target from what was seen; None if it differs from ``current`` by less than ``min_change``."""
        new = TargetWorkload.from_counts(self.counts, self.mem)
        if current is not None and new.distance(current) < self.min_change:
            return None
        return new
