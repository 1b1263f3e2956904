"""Bind a GPU slice to a local process: the one implementation, used by the local job executor and the
local spawner alike. The database stores the core's assignment; this turns it into an environment at the
moment a process starts.

What the environment says, and why:

- ``CUDA_VISIBLE_DEVICES`` lists the slice's devices (host indices, or UUIDs when ``gpu_id_mode`` is
  ``uuid``; a MIG instance by its MIG device UUID). Empty when the slice has no GPU: CUDA then sees none.
- A *share* (``0 < gpu_milli < 1000`` on one GPU, not MIG) gets MPS client limits:
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = max(1, gpu_milli // 10)`` (rounded down, so a client never gets
  more SMs than its share) and, with a memory cap, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT = "0=<MiB>M"``.
  The ordinal is **0**, not the host index: MPS reads device ordinals as the client enumerates them, and
  under ``CUDA_VISIBLE_DEVICES=<i>`` the one visible device is ordinal 0.
- ``AISTACK_NODE``, ``AISTACK_GPU_MILLI``, ``AISTACK_MIG_PROFILE``/``AISTACK_MIG_SLOT`` and
  ``AISTACK_SLICE`` (the assignment as JSON) tell the workload what it holds.
"""
from __future__ import annotations

import json

from job_runner.scheduling import Assignment

# Keys this module may set: a caller that must not bind locally (Kubernetes) never calls it at all.
BINDING_KEYS = (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
    "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "CUDA_MPS_PIPE_DIRECTORY", "AISTACK_MIG_PROFILE", "AISTACK_MIG_SLOT",
)


def device_ids(assignment: dict, *, mode: str = "index", gpus: list[dict] | None = None) -> list[str]:
    """The ids for ``CUDA_VISIBLE_DEVICES``.

    ``gpus``: the node's GPUs as NVML reports them (``job_runner.binding.discovery.nvml_gpus``), needed
    for ``mode="uuid"`` and to name a MIG instance; without them host indices are used (a MIG slice then
    falls back to its parent GPU's index, which the caller should warn about).
    """
    gpus = gpus or []
    mig = assignment.get("mig")
    if mig:
        gpu_index, _profile, start = mig
        if gpu_index < len(gpus):
            for dev in gpus[gpu_index].get("mig_devices", []):
                if dev.get("start") == start:
                    return [dev["uuid"]]
        return [str(gpu_index)]
    indices = [int(i) for i in assignment.get("gpu_indices") or ()]
    if mode == "uuid":
        return [gpus[i]["uuid"] if i < len(gpus) and gpus[i].get("uuid") else str(i) for i in indices]
    return [str(i) for i in indices]


def local_env(assignment: dict | Assignment | None, *, ids: list[str] | None = None,
              mps_pipe_directory: str | None = None) -> dict[str, str]:
    """The environment that confines a local process to ``assignment`` (see the module docstring)."""
    if isinstance(assignment, Assignment):
        assignment = assignment.to_dict()
    a = assignment or {}
    ids = device_ids(a) if ids is None else [str(i) for i in ids]
    milli = int(a.get("gpu_milli") or 0)
    env = {
        "CUDA_VISIBLE_DEVICES": ",".join(ids),
        "NVIDIA_VISIBLE_DEVICES": ",".join(ids) if ids else "void",
        "AISTACK_NODE": str(a.get("node") or ""),
        "AISTACK_GPU_MILLI": str(milli),
        "AISTACK_SLICE": json.dumps(a, sort_keys=True),
    }
    mig = a.get("mig")
    if mig:
        env["AISTACK_MIG_PROFILE"] = str(mig[1])
        env["AISTACK_MIG_SLOT"] = str(mig[2])
    elif len(ids) == 1 and 0 < milli < 1000:
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, milli // 10))
        if a.get("gpu_mem_mib"):
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={int(a['gpu_mem_mib'])}M"
        if mps_pipe_directory:
            env["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe_directory
    return env

