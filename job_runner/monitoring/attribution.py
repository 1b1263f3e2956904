"""Which workload a GPU's use belongs to.

A workload is a server's slice (``alloc:<id>``, the spawner puts ``AISTACK_ALLOCATION_ID`` in the server's
environment) or a job (``job:<id>``, ``AISTACK_JOB_ID``). In order of precedence:

1. **processes** (NVML): a GPU process's pid is walked up its parents (a kernel is the server's child)
   until one has ``AISTACK_ALLOCATION_ID`` or ``AISTACK_JOB_ID`` in ``/proc/<pid>/environ``;
2. **pods** (DCGM with pod mapping): the series' ``namespace``/``pod`` matched to the workload's pod;
3. **devices**: a whole GPU or a MIG instance held by one workload is that workload's; a *share*
   (milli-GPU) gets the device's activity as an upper bound (several shares use one device): an idle
   device means every share on it is idle, a busy one means none of them is judged idle (conservative:
   culling never stops a share because a neighbour made the device look idle, nor the other way round).
"""
from __future__ import annotations

import os

from .samples import Reading, WorkloadSample

ENV_KEYS = (b"AISTACK_ALLOCATION_ID=", "alloc:"), (b"AISTACK_JOB_ID=", "job:")


def workload_of_pid(pid: int, proc: str = "/proc", depth: int = 16) -> str | None:
    """``alloc:<id>`` / ``job:<id>`` for ``pid`` (or an ancestor), None when none is ours or unreadable."""
    for _ in range(depth):
        try:
            with open(f"{proc}/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            env = []
        for var in env:
            for prefix, kind in ENV_KEYS:
                if var.startswith(prefix) and var[len(prefix):]:
                    return kind + var[len(prefix):].decode(errors="replace")
        try:
            with open(f"{proc}/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if ppid <= 1:
            return None
        pid = ppid
    return None


def _device_keys(asg: dict) -> list[tuple[str, str, bool]]:
    """(node, gpu key prefix, exact) per device of an assignment."""
    node = asg.get("node", "")
    if asg.get("mig"):
        g, prof, _start = asg["mig"]
        return [(node, f"{g}/mig-{prof}/", False)]
    return [(node, str(i), True) for i in asg.get("gpu_indices") or []]


def attribute(reading: Reading, workloads: list[dict], pid_resolver=workload_of_pid) -> list[WorkloadSample]:
    """A WorkloadSample per workload that holds a GPU. ``workloads``: dicts with ``workload`` (key),
    ``tenant``, ``user``, ``assignment`` (the scheduler's), optional ``namespace``/``pod``."""
    by_proc: dict[str, list] = {}
    for p in reading.processes:
        key = pid_resolver(p.pid)
        if key:
            by_proc.setdefault(key, []).append(p)
    by_pod = {(g.namespace, g.pod): g for g in reading.gpus if g.pod}
    out = []
    for w in workloads:
        asg = w.get("assignment") or {}
        devices = _device_keys(asg)
        if not devices:
            continue
        key = w["workload"]
        util = mem = None
        procs = by_proc.get(key)
        pod = by_pod.get((w.get("namespace", ""), w.get("pod", ""))) if w.get("pod") else None
        if procs:
            util = sum(p.util_pct or 0.0 for p in procs)
            mem = sum(p.mem_used_mib or 0.0 for p in procs)
        elif pod is not None:
            util, mem = pod.activity_pct, pod.mem_used_mib
        else:
            shared = 0 < int(asg.get("gpu_milli") or 0) < 1000
            acts, mems = [], []
            for node, gkey, exact in devices:
                for g in reading.gpus:
                    if g.node == node and (g.gpu == gkey if exact else g.gpu.startswith(gkey)):
                        if g.activity_pct is not None:
                            acts.append(g.activity_pct)
                        if g.mem_used_mib is not None and not shared:
                            mems.append(g.mem_used_mib)
            if acts:
                util = max(acts)  # the busiest of its devices (or the device a share sits on)
            mem = sum(mems) if mems else None
        out.append(WorkloadSample(ts=reading.ts, workload=key, tenant=w.get("tenant", ""), user=w.get("user", ""),
                                  util_pct=None if util is None else min(100.0, util), mem_used_mib=mem,
                                  gpus=tuple(f"{n}/{g}" for n, g, _ in devices)))
    return out


def proc_readable(proc: str = "/proc") -> bool:
    return os.access(f"{proc}/self/environ", os.R_OK)
