"""Proves the GPU paths on a machine with a real NVIDIA GPU (run by hand, not by CI: CI has no GPU).

    python benchmarks/gpu_device_check.py [--out DIR] [--mps]

1. NVML discovery (job_runner.binding.discovery) -> the scheduling core's Inventory.
2. The scheduler places two time-shared slices with a memory cap and a whole-GPU request of two tenants
   (the whole GPU must wait while the shares run: same GPU).
3. Each admitted slice runs a small PyTorch notebook as a job through the LocalExecutor (papermill in its
   own process group, with the slice's environment): the notebook reports the device it sees, the slice
   environment, trains a tiny model on the GPU, and tries to allocate past the slice's memory cap.
4. With --mps, a CUDA MPS control daemon is started for the run (and stopped after), so
   CUDA_MPS_PINNED_DEVICE_MEM_LIMIT / CUDA_MPS_ACTIVE_THREAD_PERCENTAGE are enforced by the driver.
Prints a JSON report (also written to DIR/report.json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import nbformat

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from job_runner.binding.local import local_env  # noqa: E402
from job_runner.executors.base import JobSpec  # noqa: E402
from job_runner.executors.local import LocalExecutor  # noqa: E402
from job_runner.scheduling import Inventory, Quota, Scheduler, SliceRequest, Tenant, Workload  # noqa: E402
from job_runner.binding.discovery import discover, inventory_fields  # noqa: E402

NOTEBOOK_CELLS = [
    ("code", "steps = 200\nalloc_gib = 24", {"tags": ["parameters"]}),
    ("code", "import os, json, torch\n"
             "env = {k: v for k, v in os.environ.items() if k.startswith(('CUDA_', 'AISTACK_'))}\n"
             "print(json.dumps(env, sort_keys=True))\n"
             "assert torch.cuda.is_available(), 'CUDA not available in the slice'\n"
             "dev = torch.cuda.get_device_properties(0)\n"
             "seen = {'device_count': torch.cuda.device_count(), 'name': dev.name,\n"
             "        'total_mib': dev.total_memory // 2**20, 'torch': torch.__version__}\n"
             "print('SEEN', json.dumps(seen))", {}),
    ("code", "torch.manual_seed(0)\n"
             "x = torch.randn(4096, 256, device='cuda'); w_true = torch.randn(256, 1, device='cuda')\n"
             "y = x @ w_true + 0.01 * torch.randn(4096, 1, device='cuda')\n"
             "model = torch.nn.Linear(256, 1).cuda(); opt = torch.optim.Adam(model.parameters(), lr=0.05)\n"
             "for _ in range(steps):\n"
             "    opt.zero_grad(); loss = torch.nn.functional.mse_loss(model(x), y); loss.backward(); opt.step()\n"
             "print('LOSS', float(loss))", {}),
    ("code", "try:\n"
             "    big = torch.empty(int(alloc_gib * 2**30), dtype=torch.uint8, device='cuda')\n"
             "    torch.cuda.synchronize(); print('ALLOC', alloc_gib, 'GiB ok'); del big\n"
             "except torch.OutOfMemoryError as e:\n"
             "    print('ALLOC', alloc_gib, 'GiB refused:', str(e).splitlines()[0][:200])\n"
             "except RuntimeError as e:\n"
             "    print('ALLOC', alloc_gib, 'GiB refused:', str(e).splitlines()[0][:200])", {}),
]


def notebook_json() -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src, meta in NOTEBOOK_CELLS:
        cell = nbformat.v4.new_code_cell(src)
        cell.metadata.update(meta)
        nb.cells.append(cell)
    return nbformat.writes(nb)


def start_mps(pipe_dir: str, log_dir: str) -> dict:
    env = dict(os.environ, CUDA_MPS_PIPE_DIRECTORY=pipe_dir, CUDA_MPS_LOG_DIRECTORY=log_dir)
    exe = shutil.which("nvidia-cuda-mps-control")
    if not exe:
        return {"started": False, "reason": "nvidia-cuda-mps-control not found"}
    r = subprocess.run([exe, "-d"], env=env, capture_output=True, text=True, timeout=30)
    return {"started": r.returncode == 0, "rc": r.returncode, "stderr": r.stderr[-500:]}


def stop_mps(pipe_dir: str, log_dir: str) -> None:
    env = dict(os.environ, CUDA_MPS_PIPE_DIRECTORY=pipe_dir, CUDA_MPS_LOG_DIRECTORY=log_dir)
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe:
        subprocess.run([exe], input="quit\n", env=env, text=True, timeout=30)


async def run_job(executor: LocalExecutor, job_id: int, assignment: dict, request: dict, params: dict) -> dict:
    env = local_env(assignment)  # what the executor binds at start (reported below)
    spec = JobSpec(id=job_id, name=f"gpu-check-{job_id}", user="alice", tenant="t", profile="p", attempt=1,
                   notebook=notebook_json(), parameters=params, kernel_name="python3", request=request)
    t0 = time.monotonic()
    handle = await executor.start(spec, assignment)
    state = await executor.poll(handle)
    while not state.final and time.monotonic() - t0 < 240:
        await asyncio.sleep(0.5)
        state = await executor.poll(handle)
    logs, _ = await executor.read_logs(spec)
    out = await executor.read_output(spec) or ""
    lines = []
    if out:
        for cell in nbformat.reads(out, as_version=4).cells:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    lines.extend(o.get("text", "").splitlines())
                elif o.get("output_type") == "error":
                    lines.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
    return {"job_id": job_id, "env": env, "state": state.state, "failure": state.failure,
            "seconds": round(time.monotonic() - t0, 2), "notebook_output": lines,
            "log_tail": logs.decode(errors="replace")[-1500:]}


async def main_async(args) -> dict:
    report: dict = {}
    found = discover()
    report["discovery"] = found
    nodes = [inventory_fields(n) for n in found["nodes"]]
    inv = Inventory.from_config(nodes)
    gpu0 = nodes[0]["gpus"][0] if nodes and nodes[0]["gpus"] else None
    if not gpu0:
        report["error"] = "no GPU discovered"
        return report
    cap_mib = 16 * 1024
    share = SliceRequest(kind="share", gpu_milli=250, gpu_mem_mib=cap_mib, cpu_milli=1000, memory_mib=4096)
    whole = SliceRequest(kind="whole", gpus=1, cpu_milli=1000, memory_mib=4096)
    tenants = [Tenant(name="vision", quotas={"any": Quota(gpu_milli=1000)}),
               Tenant(name="nlp", quotas={"any": Quota(gpu_milli=2000)})]
    sched = Scheduler(inv, tenants)
    now = time.time()
    for wid, tenant, req in [("share-a", "vision", share), ("share-b", "nlp", share), ("whole-c", "nlp", whole)]:
        report.setdefault("submit", {})[wid] = sched.submit(
            Workload(id=wid, tenant=tenant, user="alice", kind="job", priority="normal", request=req,
                     submitted_at=now, expected_duration_s=60)).ok
        now += 1
    decision = sched.schedule(time.time())
    report["admitted"] = {w.id: a.to_dict() for w, a in decision.admitted}
    report["pending"] = [{"id": p.workload.id, "position": p.position, "reason": p.reason,
                          "estimated_start_in_s": round(p.estimated_start - time.time(), 1)
                          if p.estimated_start else None} for p in decision.pending]

    pipe_dir = tempfile.mkdtemp(prefix="mps-pipe-")
    log_dir = tempfile.mkdtemp(prefix="mps-log-")
    if args.mps:
        report["mps"] = start_mps(pipe_dir, log_dir)
    executor = LocalExecutor(jobs_dir=tempfile.mkdtemp(prefix="gpu-check-jobs-"))
    if args.mps and report["mps"].get("started"):
        executor.extra_env = {"CUDA_MPS_PIPE_DIRECTORY": pipe_dir, "CUDA_MPS_LOG_DIRECTORY": log_dir}
    try:
        runs = []
        for i, (w, a) in enumerate(decision.admitted, start=1):
            req = {"kind": w.request.kind, "gpu_milli": w.request.gpu_milli, "gpu_mem_mib": w.request.gpu_mem_mib}
            # alloc 24 GiB: past the 16 GiB cap of the share
            runs.append(run_job(executor, i, a.to_dict(), req, {"steps": 200, "alloc_gib": 24}))
        report["jobs"] = await asyncio.gather(*runs)
    finally:
        if args.mps and report["mps"].get("started"):
            stop_mps(pipe_dir, log_dir)
    # Release the shares: the whole GPU is admitted next.
    for w, _ in decision.admitted:
        sched.release(w.id)
    nxt = sched.schedule(time.time())
    report["after_release_admitted"] = [w.id for w, _ in nxt.admitted]
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-check-"))
    p.add_argument("--mps", action="store_true", help="run the jobs under a CUDA MPS control daemon")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2, default=str)
    with open(os.path.join(args.out, "report.json" if not args.mps else "report-mps.json"), "w") as f:
        f.write(text)
    print(text)
    return 0 if report.get("jobs") and all(j["state"] == "succeeded" for j in report["jobs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
