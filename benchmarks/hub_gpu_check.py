"""On a machine with NVIDIA GPUs: NVML discovery, then a small PyTorch run in each kind of slice the
LocalGPUSpawner binds (whole GPU, shares with MPS limits, CPU only, on GPU 0 and on the last GPU), with the
exact environment ``LocalGPUSpawner.slice_binding`` computes (``job_runner.binding.local.local_env``, the
one local binding, shared with the local job executor).

    python benchmarks/hub_gpu_check.py [--mps]

Needs nvidia-ml-py (and PyTorch for the compute part; without it, says so). Changes nothing on the GPU
(no MIG or MPS reconfiguration; the MPS variables act only where an MPS daemon already runs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job_runner.binding.discovery import discover  # noqa: E402
from spawner.local import LocalGPUSpawner  # noqa: E402

PROBE = r"""
import json, os, time
out = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
       "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
       "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": os.environ.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")}
try:
    import torch
except ImportError as e:
    out["torch"] = f"not installed: {e}"
else:
    out["torch"] = torch.__version__
    out["device_count"] = torch.cuda.device_count()
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        a = torch.randn(4096, 4096, device="cuda"); b = torch.randn(4096, 4096, device="cuda")
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(20): c = a @ b
        torch.cuda.synchronize(); dt = time.perf_counter() - t
        out["matmul_tflops"] = round(20 * 2 * 4096 ** 3 / dt / 1e12, 1)
        out["checksum"] = float(c[0, :8].sum().item())
        del a, b, c
        try:  # beyond a 4 GiB pinned-memory limit when MPS enforces it
            x = torch.empty(6 * 2 ** 30, dtype=torch.uint8, device="cuda"); x.fill_(1); torch.cuda.synchronize()
            out["alloc_6GiB"] = "ok"
        except RuntimeError as e:
            out["alloc_6GiB"] = "refused: " + str(e).splitlines()[0][:160]
print(json.dumps(out))
"""


def main():
    mps_dir = None
    if "--mps" in sys.argv:
        # A private MPS control daemon (own pipe folder), stopped at the end: shares become MPS clients whose
        # thread percentage and pinned-memory limits are enforced.
        import shutil
        import tempfile

        mps_dir = tempfile.mkdtemp(prefix="aistack-mps-")
        os.environ["CUDA_MPS_PIPE_DIRECTORY"] = os.path.join(mps_dir, "pipe")
        os.environ["CUDA_MPS_LOG_DIRECTORY"] = os.path.join(mps_dir, "log")
        os.makedirs(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
        os.makedirs(os.environ["CUDA_MPS_LOG_DIRECTORY"])
        exe = shutil.which("nvidia-cuda-mps-control")
        if not exe:
            print("nvidia-cuda-mps-control not found: MPS part skipped")
            mps_dir = None
        else:
            subprocess.run([exe, "-d"], check=True)
            print(f"== MPS control daemon started (pipe {os.environ['CUDA_MPS_PIPE_DIRECTORY']})")
    try:
        return run_checks()
    finally:
        if mps_dir:
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True)
            print("== MPS control daemon stopped")


def run_checks():
    found = discover(None)
    print("== discovery (python -m job_runner.binding.discovery)")
    print(json.dumps(found, indent=1))
    node = found["nodes"][0]
    if not node["gpus"]:
        print("no GPU found: nothing to pin")
        return 1
    spawner = LocalGPUSpawner(mps_pipe_directory=os.environ.get("CUDA_MPS_PIPE_DIRECTORY", ""))
    last = len(node["gpus"]) - 1
    cases = {
        "whole GPU 0": {"node": node["name"], "gpu_indices": [0], "gpu_milli": 1000},
        "1/4 share of GPU 0, 12 GiB": {"node": node["name"], "gpu_indices": [0], "gpu_milli": 250,
                                        "gpu_mem_mib": 12288},
        "CPU only": {"node": node["name"], "gpu_indices": [], "gpu_milli": 0},
        "1/10 share of GPU 0, 4 GiB": {"node": node["name"], "gpu_indices": [0], "gpu_milli": 100,
                                        "gpu_mem_mib": 4096},
        # Not GPU 0: the memory limit must name the visible ordinal 0, or MPS ignores it.
        f"1/4 share of GPU {last}, 4 GiB": {"node": node["name"], "gpu_indices": [last], "gpu_milli": 250,
                                             "gpu_mem_mib": 4096},
    }
    for name, asg in cases.items():
        binding = spawner.slice_binding(asg)
        env = dict(os.environ, **binding)
        r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
        shown = {k: v for k, v in binding.items() if k != "AISTACK_SLICE"}
        print(f"== slice: {name}: env {shown}")
        print(r.stdout.strip() or r.stderr.strip()[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
