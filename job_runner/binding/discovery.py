"""GPU discovery for the local node: NVML (``nvidia-ml-py``) when a driver is present, else the configured
inventory.

``python -m job_runner.binding.discovery`` prints what this machine offers as JSON: the inventory entry of this node
(the format of ``job_runner.scheduling.Inventory.from_config``) plus NVML details (driver, MIG devices).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys

# NVML marketing names -> the model names of job_runner.scheduling.GPU_MODELS.
# Ordered: the first pattern that matches wins (more specific first).
_MODEL_PATTERNS: list[tuple[str, str]] = [
    (r"H200", "H200"),
    (r"H100", "H100-80GB"),
    (r"A100.*80\s*GB", "A100-80GB"),
    (r"A100", "A100-40GB"),
    (r"A30\b", "A30"),
    (r"L40S", "L40S"),
    (r"\bL4\b", "L4"),
    (r"\bA10\b", "A10"),
    (r"\bT4\b", "T4"),
    (r"V100.*32", "V100M32"),
    (r"V100", "V100M16"),
    (r"P100", "P100"),
]


def model_name(nvml_name: str) -> str:
    """Map an NVML device name ("NVIDIA A100-SXM4-80GB") to our model name ("A100-80GB").

    Unknown devices keep their NVML name, so they still show up (without MIG rules)."""
    for pattern, model in _MODEL_PATTERNS:
        if re.search(pattern, nvml_name, re.IGNORECASE):
            return model
    return nvml_name.replace("NVIDIA ", "").strip() or "unknown"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_gpus() -> tuple[list[dict], dict]:
    """The GPUs NVML sees, as inventory GPU dicts (index order), and facts about the driver.

    Raises ``RuntimeError`` with NVML's reason when NVML cannot be used (no driver, no library)."""
    try:
        import pynvml
    except ImportError as e:  # nvidia-ml-py is an install requirement; be explicit if it is missing
        raise RuntimeError(f"nvidia-ml-py is not installed: {e}") from e
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise RuntimeError(f"NVML unavailable: {e}") from e
    try:
        facts = {"driver": _text(pynvml.nvmlSystemGetDriverVersion())}
        try:
            facts["cuda_driver"] = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        except (pynvml.NVMLError, AttributeError):
            pass
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _text(pynvml.nvmlDeviceGetName(h))
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            gpu = {
                "model": model_name(name),
                "memory_mib": int(mem.total // (1024 * 1024)),
                "uuid": _text(pynvml.nvmlDeviceGetUUID(h)),
                "mig_enabled": False,
                "nvml_name": name,
            }
            try:
                current, _pending = pynvml.nvmlDeviceGetMigMode(h)
                gpu["mig_enabled"] = current == pynvml.NVML_DEVICE_MIG_ENABLE
            except pynvml.NVMLError:
                pass  # not MIG-capable
            try:
                gpu["utilization_pct"] = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                gpu["memory_used_mib"] = int(mem.used // (1024 * 1024))
            except pynvml.NVMLError:
                pass
            if gpu["mig_enabled"]:
                gpu["mig_devices"] = _mig_devices(pynvml, h)
            gpus.append(gpu)
        return gpus, facts
    finally:
        pynvml.nvmlShutdown()


def _mig_devices(pynvml, handle) -> list[dict]:
    """Existing MIG instances of a GPU: uuid, GPU-instance profile size and start slot (for pinning)."""
    out = []
    try:
        count = pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except pynvml.NVMLError:
        return out
    for j in range(count):
        try:
            mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
        except pynvml.NVMLError:
            continue
        dev = {"uuid": _text(pynvml.nvmlDeviceGetUUID(mh))}
        try:
            dev["memory_mib"] = int(pynvml.nvmlDeviceGetMemoryInfo(mh).total // (1024 * 1024))
            gi_id = pynvml.nvmlDeviceGetGpuInstanceId(mh)
            gi = pynvml.nvmlDeviceGetGpuInstanceById(handle, gi_id)
            info = pynvml.nvmlGpuInstanceGetInfo(gi)
            dev["gpu_instance_id"] = gi_id
            dev["start"] = int(info.placement.start)
            dev["size"] = int(info.placement.size)
        except (pynvml.NVMLError, AttributeError):
            pass
        out.append(dev)
    return out


def local_node(name: str | None = None, gpus: list[dict] | None = None) -> dict:
    """This machine as one inventory entry: CPUs and memory from the OS, GPUs as given."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return {
        "name": name or socket.gethostname(),
        "cpu_milli": cpus * 1000,
        "memory_mib": int(mem_mib),
        "gpus": list(gpus or []),
        "labels": {},
        "healthy": True,
    }


def inventory_fields(node: dict) -> dict:
    """Strip a discovered node to the keys ``Inventory.from_config`` accepts."""
    keep_gpu = ("model", "memory_mib", "uuid", "mig_enabled")
    out = {k: node[k] for k in ("name", "cpu_milli", "memory_mib", "labels", "healthy") if k in node}
    out["gpus"] = [{k: g[k] for k in keep_gpu if k in g} for g in node.get("gpus", [])]
    return out


def discover(configured: list[dict] | None = None, node_name: str | None = None) -> dict:
    """Discover the GPU inventory.

    Returns ``{"source": "nvml"|"configured"|"none", "nodes": [...], "nvml": {...}}``. NVML wins when it
    finds at least one GPU; otherwise the configured inventory (a list of ``Inventory.from_config`` dicts)
    stands in; with neither, the local node without GPUs (CPU-only profiles still work)."""
    nvml: dict = {}
    try:
        gpus, facts = nvml_gpus()
        nvml = {"available": True, **facts}
    except RuntimeError as e:
        gpus, nvml = [], {"available": False, "reason": str(e)}
    if gpus:
        return {"source": "nvml", "nodes": [local_node(node_name, gpus)], "nvml": nvml}
    if configured:
        return {"source": "configured", "nodes": [dict(n) for n in configured], "nvml": nvml}
    return {"source": "none", "nodes": [local_node(node_name, [])], "nvml": nvml}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job_runner.binding.discovery",
                                     description="Print the GPU inventory of this machine as JSON.")
    parser.add_argument("--config", help="aistack config file (YAML) whose inventory stands in when NVML finds no GPU")
    parser.add_argument("--node-name", help="name of this node (default: the host name)")
    args = parser.parse_args(argv)
    configured = None
    if args.config:
        import yaml

        with open(args.config) as f:
            configured = (yaml.safe_load(f) or {}).get("inventory")
    result = discover(configured, args.node_name)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
