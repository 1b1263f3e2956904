"""Kubernetes benchmark: spawn servers and run notebook jobs on fake GPU nodes, against plain baselines.

    .venv/bin/python benchmarks/k8s_spawn_jobs.py [--nodes 100] [--servers 200] [--jobs 1000]
        [--concurrency 20] [--json]

Starts the test control plane of tests/k8s (real kube-apiserver, controller-manager, scheduler; kwok
for --nodes fake GPU nodes: half 8x A100-80GB with nvidia.com/gpu, half 4x T4 time-sliced into
nvidia.com/gpu.shared x4), then measures, in this one process:

servers  --servers spawns, --concurrency at a time, of
         baseline: plain kubespawner.KubeSpawner with a hand-written GPU profile (nvidia.com/gpu: 1 and
                   a node selector), no allocation;
         aistack:  KubeGPUSpawner: slice allocated by the scheduling core (quota, placement, the
                   in-process stand-in of POST allocations), rendered with the time-slice backend,
                   alternating a whole A100 and a 1/4 T4.
         Latency of start() (until kubespawner sees the pod running) p50/p95/p99; spawns per second.
jobs     --jobs notebook jobs of 1/4 T4, all submitted at once, of
         baseline: plain batch/v1 Jobs created directly (same pod resources), watched until complete;
         aistack:  rows queued in the job service's database, admitted by its scheduling loop
                   (job_runner.controller.Controller) and run by KubernetesExecutor, until the database
                   records success.
         Latency submit -> succeeded p50/p95/p99; jobs per second (count / makespan).
kwok completes each Job pod after about 1 s (the stage delay): that floor is in both columns.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARE = {"kind": "share", "gpu_milli": 250, "gpu_models": ["T4"], "cpu_milli": 100, "memory_mib": 256}
WHOLE = {"kind": "whole", "gpus": 1, "gpu_models": ["A100-80GB"], "cpu_milli": 100, "memory_mib": 256}
PROFILES = [{"slug": "t4-quarter", "display_name": "1/4 T4", "request": SHARE},
            {"slug": "a100-1", "display_name": "1x A100", "request": WHOLE}]
IMAGE = "quay.io/jupyter/base-notebook:latest"


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary(latencies, makespan):
    return {"n": len(latencies), "p50_s": pct(latencies, 50), "p95_s": pct(latencies, 95), "p99_s": pct(latencies, 99),
            "max_s": max(latencies) if latencies else float("nan"),
            "mean_s": statistics.fmean(latencies) if latencies else float("nan"),
            "per_s": len(latencies) / makespan if makespan else float("nan"), "makespan_s": makespan}


def fake_nodes(n):
    from tests.k8s.controlplane import gpu_node

    nodes = []
    for i in range(n):
        if i % 2 == 0:
            nodes.append(gpu_node(f"bench-a100-{i}", product="NVIDIA-A100-SXM4-80GB", gpus=8, gpu_memory_mib=81920,
                                  resources={"nvidia.com/gpu": 8}, cpu="96", memory="1Ti"))
        else:
            nodes.append(gpu_node(f"bench-t4-{i}", product="Tesla-T4-SHARED", gpus=4, gpu_memory_mib=15360,
                                  resources={"nvidia.com/gpu.shared": 16}, cpu="32", memory="256Gi",
                                  labels={"nvidia.com/gpu.replicas": "4"}))
    return nodes


# -- servers ---------------------------------------------------------------------------------------

def make_spawner(cls, cp, index, config):
    s = cls(_mock=True, config=config)
    s.user.name = f"bench{index}"
    s.user.groups = [SimpleNamespace(name="bench")]
    s.pod_name = f"jupyter-{cls.__name__.lower()}-{index}"
    return s


async def spawn_all(spawners, concurrency, options):
    sem = asyncio.Semaphore(concurrency)
    latencies, errors = [], []

    async def one(i, s):
        async with sem:
            s.user_options = options(i)
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(s.start(), 300)
                latencies.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted and printed, with the pod's own status
                why = ""
                try:
                    pod = await s.api.read_namespaced_pod(s.pod_name, s.namespace)
                    why = f" [pod {pod.status.phase} on {pod.spec.node_name}: " + "; ".join(
                        f"{c.type}={c.status} {c.reason or ''} {c.message or ''}" for c in pod.status.conditions or []) + "]"
                except Exception as e2:  # noqa: BLE001
                    why = f" [pod unreadable: {e2}]"[:200]
                errors.append(f"{s.pod_name}: {type(e).__name__}: {e}{why}"[:600])

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, s) for i, s in enumerate(spawners)))
    makespan = time.perf_counter() - t0
    stop_sem = asyncio.Semaphore(concurrency)

    async def stop(s):
        async with stop_sem:
            try:
                await s.stop(now=True)
            except Exception:  # noqa: BLE001
                pass

    await asyncio.gather(*(stop(s) for s in spawners))
    return summary(latencies, makespan), errors


async def bench_servers(cp, args):
    from kubespawner import KubeSpawner
    from traitlets.config import Config

    from job_runner.scheduling import Tenant
    from tests.k8s_workloads.inprocess import CoreAllocation, InProcessKubeGPUSpawner

    cp.create_namespace("bench-servers")
    def base():  # a fresh Config each time: sub-configs of a copied Config are shared
        c = Config()
        c.KubeSpawner.k8s_api_host = cp.server
        c.KubeSpawner.namespace = "bench-servers"
        c.KubeSpawner.image = IMAGE
        c.KubeSpawner.start_timeout = args.start_timeout
        c.KubeSpawner.events_enabled = False
        return c

    plain = base()
    plain.KubeSpawner.extra_resource_limits = {"nvidia.com/gpu": "1"}
    plain.KubeSpawner.node_selector = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    plain.KubeSpawner.cpu_guarantee = 0.1
    plain.KubeSpawner.mem_guarantee = "256M"
    plain_spawners = [make_spawner(KubeSpawner, cp, i, plain) for i in range(args.servers)]
    baseline, base_err = await spawn_all(plain_spawners, args.concurrency, lambda i: {})

    ours = base()
    ours.SliceRenderer.backend = "time-slice"
    InProcessKubeGPUSpawner.core = CoreAllocation(
        [n for n in cp.kubectl_json("get", "nodes")["items"] if n["metadata"]["name"].startswith("bench-")],
        [Tenant.from_config({"name": "bench"})], PROFILES)
    our_spawners = [make_spawner(InProcessKubeGPUSpawner, cp, i, ours) for i in range(args.servers)]
    aistack, our_err = await spawn_all(
        our_spawners, args.concurrency,
        lambda i: {"tenant": "bench", "profile": "a100-1" if i % 2 else "t4-quarter"})
    await KubeSpawner._stop_all_reflectors()
    return baseline, aistack, base_err + our_err


# -- jobs ------------------------------------------------------------------------------------------

async def bench_plain_jobs(cp, args):
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)
    cp.create_namespace("bench-plain-jobs")
    created = {}
    async with client.ApiClient(cfg) as api:
        batch = client.BatchV1Api(api)
        sem = asyncio.Semaphore(args.concurrency)

        async def create(i):
            body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"plain-{i}", "labels": {"bench": "plain"}},
                    "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"bench": "plain"}}, "spec": {
                        "restartPolicy": "Never", "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4-SHARED"},
                        "containers": [{"name": "notebook", "image": IMAGE, "command": ["python", "-c", "pass"],
                                        "resources": {"limits": {"nvidia.com/gpu.shared": "1", "cpu": "100m",
                                                                 "memory": "256Mi"}}}]}}}}
            async with sem:
                created[f"plain-{i}"] = time.perf_counter()
                await batch.create_namespaced_job("bench-plain-jobs", body)

        t0 = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(args.jobs)))
        done = {}
        while len(done) < args.jobs and time.perf_counter() - t0 < args.timeout:
            jobs = await batch.list_namespaced_job("bench-plain-jobs", label_selector="bench=plain")
            now = time.perf_counter()
            for j in jobs.items:
                conds = {c.type for c in (j.status.conditions or []) if c.status == "True"}
                if conds & {"Complete", "Failed"} and j.metadata.name not in done:
                    done[j.metadata.name] = now
            await asyncio.sleep(0.5)
        makespan = time.perf_counter() - t0
    return summary([done[n] - created[n] for n in done], makespan)


async def bench_aistack_jobs(cp, args, workdir):
    from aistack_hub.config import DeploymentConfig
    from job_runner.db.tenants import seed_tenants
    from job_runner.db import FINAL_STATES, Job, open_database
    from job_runner.executors.kubernetes import KubernetesExecutor
    from job_runner.controller import Controller
    from job_runner.db.ops import epoch
    from job_runner.binding.kube import SliceRenderer

    nodes = [n for n in cp.kubectl_json("get", "nodes")["items"] if n["metadata"]["name"].startswith("bench-")]
    deployment = DeploymentConfig.from_dict({"tenants": [{"name": "bench"}], "profiles": PROFILES,
                                             "inventory": SliceRenderer().inventory_config(nodes)})
    db = open_database(f"sqlite:///{workdir / 'bench-jobs.db'}")
    seed_tenants(db, deployment.tenants)
    ex = KubernetesExecutor(kubeconfig=str(cp.kubeconfig), service_url="http://aistack.invalid/api/",
                            job_token_secret="bench", image=IMAGE, ttl_seconds_after_finished=600)
    ex.renderer.backend = "time-slice"
    queue = Controller(db, deployment, ex, tick_interval_s=0.5)
    nb = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    t0 = time.perf_counter()
    wall0 = time.time()
    with db.session() as s:
        for i in range(args.jobs):
            s.add(Job(name=f"bench-{i}", user="bench", tenant="bench", profile="t4-quarter", notebook=nb,
                      parameters={}, request=SHARE))
    loop = asyncio.create_task(queue.run_forever())
    try:
        while time.perf_counter() - t0 < args.timeout:
            with db.session() as s:
                left = s.query(Job).filter(Job.state.notin_(FINAL_STATES)).count()
            if left == 0:
                break
            await asyncio.sleep(0.5)
        makespan = time.perf_counter() - t0
    finally:
        queue.stop()
        await asyncio.wait_for(loop, 30)
        await ex.close()
    with db.session() as s:
        rows = s.query(Job.state, Job.created_at, Job.started_at, Job.finished_at).all()
    ok = [r for r in rows if r.state == "succeeded"]
    latencies = [epoch(r.finished_at) - max(wall0, epoch(r.created_at)) for r in ok]
    to_running = [epoch(r.started_at) - max(wall0, epoch(r.created_at)) for r in ok if r.started_at]
    out = summary(latencies, makespan)
    out["submit_to_running_p50_s"] = pct(to_running, 50)
    out["not_succeeded"] = len(rows) - len(ok)
    return out


# -- main ------------------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if b else float("nan")


async def run(cp, args, workdir):
    results = {}
    t = time.perf_counter()
    cp.add_nodes(fake_nodes(args.nodes), timeout=300)
    results["nodes"] = {"count": args.nodes, "ready_s": time.perf_counter() - t}
    if args.servers:
        base, ours, errors = await bench_servers(cp, args)
        results["servers"] = {"baseline_kubespawner": base, "aistack_kubegpuspawner": ours,
                              "p50_ratio": ratio(ours["p50_s"], base["p50_s"]),
                              "throughput_ratio": ratio(ours["per_s"], base["per_s"]), "errors": errors[:10]}
        print("servers done:", json.dumps(results["servers"]), file=sys.stderr, flush=True)
    if args.jobs:
        base = await bench_plain_jobs(cp, args)
        print("plain jobs done:", json.dumps(base), file=sys.stderr, flush=True)
        ours = await bench_aistack_jobs(cp, args, workdir)
        results["jobs"] = {"baseline_plain_jobs": base, "aistack_queue_kubernetes_executor": ours,
                           "p50_ratio": ratio(ours["p50_s"], base["p50_s"]),
                           "throughput_ratio": ratio(ours["per_s"], base["per_s"])}
    return results


def print_table(results):
    print(f"fake GPU nodes: {results['nodes']['count']} (Ready in {results['nodes']['ready_s']:.1f}s)")
    for section, key in (("servers", "spawn"), ("jobs", "job")):
        if section not in results:
            continue
        print(f"\n{section}:")
        print(f"  {'':34} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7} {f'{key}s/s':>8}")
        for name, r in results[section].items():
            if isinstance(r, dict):
                print(f"  {name:34} {r['n']:>5} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} {r['p99_s']:>7.2f} "
                      f"{r['max_s']:>7.2f} {r['per_s']:>8.2f}")
        print(f"  aistack / baseline: p50 latency x{results[section]['p50_ratio']:.2f}, "
              f"throughput x{results[section]['throughput_ratio']:.2f}")
        if section == "jobs":
            ours = results["jobs"]["aistack_queue_kubernetes_executor"]
            print(f"  aistack submit -> running p50: {ours['submit_to_running_p50_s']:.2f}s; "
                  f"not succeeded: {ours['not_succeeded']}")
        if section == "servers" and results["servers"]["errors"]:
            print("  errors:", *results["servers"]["errors"], sep="\n    ")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--servers", type=int, default=200)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=20, help="spawns / Job creations in flight at once")
    p.add_argument("--timeout", type=float, default=1200, help="give up on a job phase after this many seconds")
    p.add_argument("--start-timeout", type=int, default=300, help="kubespawner start_timeout (s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from tests.k8s.controlplane import ControlPlane

    workdir = Path(tempfile.mkdtemp(prefix="bench-k8s-workloads-"))
    with ControlPlane(workdir=workdir / "cp", nodes_file=None) as cp:
        import kubernetes_asyncio.config.kube_config as kc

        kc.KUBE_CONFIG_DEFAULT_LOCATION = str(cp.kubeconfig)  # kubespawner's client reads the default
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        results = asyncio.run(run(cp, args, workdir))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
