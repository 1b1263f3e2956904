"""Benchmark of the test control plane itself (a command that prints figures, not a test):
start-up time, then N one-GPU Jobs across M extra fake A100 nodes, from creation to Succeeded.

    python tests/k8s/bench.py [--nodes 100] [--jobs 1000] [--batch 100]

This is the floor under anything built on top (KubernetesExecutor, KubeGPUSpawner): the time the
real Job controller, scheduler and kwok take on this machine. kwok's per-pod stage delays (about
0.2 s + 0.3 s jitter per step, 1 s before completion) are part of the latency figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.k8s.controlplane import ControlPlane, gpu_node  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def job_manifest(name: str) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"bench": "1"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"aistack.test/pool": "bench"},
            "containers": [{"name": "main", "image": "busybox",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100, help="extra fake 8 x A100 nodes")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="Jobs per kubectl create call")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    with ControlPlane() as cp:
        startup = time.monotonic() - t0
        t1 = time.monotonic()
        cp.add_nodes([gpu_node(f"bench-a100-{i}", product="NVIDIA-A100-SXM4-80GB", gpus=8, gpu_memory_mib=81920,
                               resources={"nvidia.com/gpu": 8}, labels={"aistack.test/pool": "bench"})
                      for i in range(args.nodes)], timeout=300)
        nodes_ready = time.monotonic() - t1
        cp.create_namespace("bench")

        created: dict[str, float] = {}
        done: dict[str, float] = {}
        t2 = time.monotonic()
        for start in range(0, args.jobs, args.batch):
            names = [f"job-{i}" for i in range(start, min(args.jobs, start + args.batch))]
            cp.kubectl("create", "-n", "bench", "-f", "-", timeout=120,
                       input=json.dumps({"apiVersion": "v1", "kind": "List",
                                         "items": [job_manifest(n) for n in names]}))
            now = time.monotonic()
            created.update({n: now for n in names})
        submit_s = time.monotonic() - t2
        while len(done) < args.jobs and time.monotonic() - t2 < args.timeout:
            jobs = cp.kubectl_json("get", "jobs", "-n", "bench", "-l", "bench=1")["items"]
            now = time.monotonic()
            for j in jobs:
                name = j["metadata"]["name"]
                if name not in done and j.get("status", {}).get("succeeded") == 1:
                    done[name] = now
            time.sleep(0.5)
        total_s = time.monotonic() - t2

    latencies = [done[n] - created[n] for n in done]
    print(f"control plane start (etcd, apiserver, controllers, scheduler, kwok, 6 nodes): {startup:.1f} s")
    print(f"{args.nodes} extra nodes Ready: {nodes_ready:.1f} s")
    print(f"jobs: {len(done)}/{args.jobs} succeeded; submitted in {submit_s:.1f} s; all done in {total_s:.1f} s")
    if latencies:
        print(f"throughput: {len(done) / total_s:.1f} jobs/s (creation of the first to Succeeded of the last)")
        print(f"latency create->Succeeded (s): p50 {percentile(latencies, 50):.1f}  p95 {percentile(latencies, 95):.1f}"
              f"  max {max(latencies):.1f}  mean {statistics.mean(latencies):.1f}")
    return 0 if len(done) == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
