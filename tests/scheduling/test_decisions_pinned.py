"""Pinned decisions: the placement of every request of a small seeded run, per policy, as the code made
them when the allocator's speed work began (docs/scheduling.md, "Speed"). Optimising the hot paths must
not move a single decision; a change of a policy's behaviour that is meant shows up here and is
re-pinned on purpose::

    .venv/bin/python -m tests.scheduling.test_decisions_pinned --write   # rewrites pinned_decisions.json

(pinned_decisions.json was written by the scheduling core of commit b6beb06, before the speed work.)

The run: 310 nodes of five GPU models, many identical (a shape seen for the first time is scored once
per distinct node state: that path needs more than 256 nodes), 1-, 2-, 4- and 8-GPU nodes and
CPU-only ones; 2,000 requests (shares with and without a
model constraint, 1/2/4/8 whole GPUs, CPU-only), placed one by one with none departing until the
cluster is over-full, so late requests fail and the classes of ``default`` are rebuilt online.
``fgd`` is given the whole stream's classes up front (the simulator's published-FGD mode).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from job_runner.scheduling import ClusterState, Inventory, SliceRequest, TargetWorkload, make_policy

PINNED = Path(__file__).with_name("pinned_decisions.json")
POLICIES = ["first-fit", "best-fit", "fgd", "default"]


def cluster() -> Inventory:
    return Inventory.from_config([
        {"name": "g2", "cpu_milli": 96000, "memory_mib": 786432, "gpus": 8, "gpu_model": "G2", "count": 150},
        {"name": "t4", "cpu_milli": 64000, "memory_mib": 262144, "gpus": 2, "gpu_model": "T4", "count": 110},
        {"name": "t4x4", "cpu_milli": 48000, "memory_mib": 262144, "gpus": 4, "gpu_model": "T4", "count": 6},
        {"name": "p100", "cpu_milli": 64000, "memory_mib": 262144, "gpus": 2, "gpu_model": "P100", "count": 20},
        {"name": "v100", "cpu_milli": 96000, "memory_mib": 393216, "gpus": 8, "gpu_model": "V100M32", "count": 10},
        {"name": "a10", "cpu_milli": 32000, "memory_mib": 131072, "gpus": 1, "gpu_model": "A10", "count": 8},
        {"name": "cpu", "cpu_milli": 96000, "memory_mib": 393216, "gpus": 0, "count": 6},
    ])


def requests(n: int = 2000, seed: int = 5) -> list[SliceRequest]:
    rng = np.random.default_rng(seed)
    out = []
    shares = [100, 200, 250, 300, 400, 500, 600, 700, 810, 960]
    for _ in range(n):
        u = rng.random()
        cpu = int(rng.choice([0, 1000, 2000, 4000, 8000, 16000, 32000], p=[.05, .2, .25, .2, .15, .1, .05]))
        mem = int(rng.choice([0, 2048, 8192, 16384, 65536]))
        if u < 0.5:
            models = ("T4",) if rng.random() < 0.15 else (("G2", "V100M32") if rng.random() < 0.1 else ())
            out.append(SliceRequest("share", gpu_milli=int(rng.choice(shares)), gpu_models=models, cpu_milli=cpu,
                                    memory_mib=mem))
        elif u < 0.85:
            k = int(rng.choice([1, 2, 4, 8], p=[.55, .25, .12, .08]))
            models = ("P100",) if rng.random() < 0.1 else ()
            out.append(SliceRequest("whole", gpus=k, gpu_models=models, cpu_milli=cpu, memory_mib=mem))
        else:
            out.append(SliceRequest("cpu", cpu_milli=cpu or 1000, memory_mib=mem))
    return out


def decisions(name: str) -> list:
    """[[node, [gpus]] or None] for every request, in order."""
    reqs = requests()
    state = ClusterState(cluster())
    target = TargetWorkload.from_requests(reqs) if name == "fgd" else None
    policy = make_policy(name, target, seed=3)
    out = []
    for r in reqs:
        policy.observe(r)
        p = policy.place(state, r)
        if p is None:
            out.append(None)
        else:
            state.allocate(r, p)
            out.append([int(p.node), [int(g) for g in p.gpus]])
    return out


@pytest.mark.parametrize("name", POLICIES)
def test_decisions_are_the_pinned_ones(name):
    pinned = json.loads(PINNED.read_text())[name]
    got = decisions(name)
    assert len(got) == len(pinned)
    first = next((k for k, (a, b) in enumerate(zip(got, pinned)) if a != b), None)
    assert first is None, (f"{name}: decision {first} is {got[first]}, pinned {pinned[first]} "
                           f"({sum(a != b for a, b in zip(got, pinned))} of {len(got)} differ)")
    # the run is not trivial: some requests fail, most are placed, on many nodes
    placed = [d for d in got if d is not None]
    assert 0 < len(got) - len(placed) < len(got) // 2
    assert len({d[0] for d in placed}) > 250


if __name__ == "__main__" and "--write" in sys.argv:
    PINNED.write_text(json.dumps({n: decisions(n) for n in POLICIES}, separators=(",", ":")) + "\n")
    print(f"wrote {PINNED}")
