"""Time to render the spawn form (profiles with free capacity and quota left) with 100 tenants and
1,000 GPUs in the inventory.

    .venv/bin/python benchmarks/hub_profile_form.py [--tenants 100] [--gpus 1000] [--busy 300] [--repeat 20]

Starts the real aistack service (tests/k8s_workloads/service_proc.py; no hub needed: the spawner calls it
with the hub's token) with an
inventory of GPUS A100-80GB in 8-GPU nodes, TENANTS tenants and 8 profiles, places BUSY server slices
through ``POST allocations`` so that capacity and quota are partly used, then times the spawner's own
form path (``spawner.form.options_form``: ``GET profiles`` per tenant of the user, concurrently, + HTML
rendering) for a user in 1 tenant, in 3 tenants, and in all tenants. Also prints the rendering alone.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from spawner.form import options_form, render_profile_form  # noqa: E402
from spawner.local import LocalGPUSpawner  # noqa: E402
from tests.k8s_workloads.service_proc import HUB_TOKEN, aistack_service  # noqa: E402

PROFILES = [
    {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 1000, "memory_mib": 2048}},
    {"slug": "eighth", "request": {"kind": "share", "gpu_milli": 125, "gpu_mem_mib": 10240, "cpu_milli": 1000, "memory_mib": 4096}},
    {"slug": "quarter", "request": {"kind": "share", "gpu_milli": 250, "gpu_mem_mib": 20480, "cpu_milli": 2000, "memory_mib": 8192}},
    {"slug": "half", "request": {"kind": "share", "gpu_milli": 500, "gpu_mem_mib": 40960, "cpu_milli": 4000, "memory_mib": 16384}},
    {"slug": "gpu-1", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 8000, "memory_mib": 32768}},
    {"slug": "gpu-2", "request": {"kind": "whole", "gpus": 2, "cpu_milli": 16000, "memory_mib": 65536}},
    {"slug": "gpu-8", "request": {"kind": "whole", "gpus": 8, "cpu_milli": 64000, "memory_mib": 262144}},
    {"slug": "mig-3g", "request": {"kind": "mig", "mig_profile": "3g.40gb", "cpu_milli": 2000, "memory_mib": 8192}},
]


def config(n_tenants: int, n_gpus: int) -> dict:
    nodes = n_gpus // 8
    return {
        "tenants": [{"name": f"t{i:03d}", "quotas": {"any": {"gpu_milli": 16000 + 1000 * (i % 8)}}}
                    for i in range(n_tenants)],
        "profiles": PROFILES,
        "inventory": [
            {"name": "mig", "count": max(1, nodes // 8), "cpu_milli": 128000, "memory_mib": 1048576, "gpus": 8,
             "gpu_model": "A100-80GB", "mig_enabled": True},
            {"name": "node", "count": nodes - max(1, nodes // 8), "cpu_milli": 128000, "memory_mib": 1048576,
             "gpus": 8, "gpu_model": "A100-80GB"},
        ],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--gpus", type=int, default=1000)
    p.add_argument("--busy", type=int, default=300, help="server slices placed before timing")
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-formbench-")
    data = config(args.tenants, args.gpus)
    try:
        # The tests' one way to start the real service (its own process, the hub's token).
        with aistack_service(Path(tmp), data) as svc:
            bench(args, data, svc["api"], HUB_TOKEN)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(args, data: dict, api: str, token: str):
    headers = {"Authorization": f"token {token}"}
    slugs = ["eighth", "quarter", "half", "gpu-1"]
    for i in range(args.busy):
        r = requests.post(api + "allocations", headers=headers, timeout=120, json={
            "user": f"u{i}", "tenant": f"t{i % args.tenants:03d}", "profile": slugs[i % len(slugs)],
            "server_name": "", "wait": False})
        if r.status_code not in (201, 403, 409):
            raise SystemExit(f"POST allocations: {r.status_code} {r.text}")
    inv = requests.get(api + "inventory", headers=headers, timeout=60).json()
    gpus = sum(len(n["gpus"]) for n in inv["nodes"])
    used = sum(w.get("gpu_milli") or 0 for n in inv["nodes"] for g in n["gpus"] for w in g["workloads"])
    print(f"inventory: {gpus} GPUs in {len(inv['nodes'])} nodes, {used / 1000:.1f} GPUs allocated "
          f"to {args.busy} servers; {args.tenants} tenants, {len(PROFILES)} profiles")

    tenants = [t["name"] for t in data["tenants"]]

    async def run(n_tenants: int) -> list[float]:
        user = SimpleNamespace(name="bench", groups=[SimpleNamespace(name=t) for t in tenants[:n_tenants]],
                               url="/user/bench/", settings={})
        sp = LocalGPUSpawner(user=user, aistack_api_url=api, aistack_token=token)
        out = []
        html = ""
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            html = await options_form(sp)
            out.append(time.perf_counter() - t0)
        assert html.count("<fieldset") == n_tenants, html[:500]
        return out

    for n in (1, 3, args.tenants):
        ts = asyncio.run(run(n))
        print(f"form for a user in {n:3d} tenant(s): median {1000 * statistics.median(ts):7.1f} ms, "
              f"p95 {1000 * sorted(ts)[int(0.95 * (len(ts) - 1))]:7.1f} ms (n={len(ts)})")
    by_tenant = {t: [dict(p, free=3, fits_quota=True, quota_left={"gpu_milli": 1000}) for p in PROFILES]
                 for t in tenants}
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        render_profile_form(tenants, by_tenant)
    print(f"HTML rendering alone, {args.tenants} tenants x {len(PROFILES)} profiles: "
          f"{1000 * (time.perf_counter() - t0) / args.repeat:.2f} ms")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
