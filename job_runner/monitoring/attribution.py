"""Which workload a GPU's use belongs to.

A workload is a server's slice (``alloc:<id>``, the spawner puts ``AISTACK_ALLOCATION_ID`` in the server's
environment) or a job (``job:<id>``, ``AISTACK_JOB_ID``). In order of precedence:

1. **processes** (NVML): a GPU process's pid is walked up its parents (a kernel is the server's child)
   until one has ``AISTACK_ALLOCATION_ID`` or ``AISTACK_JOB_ID`` in ``/proc/<pid>/environ``;
2. **pods** (DCGM with pod mapping): the series' ``pod`` (and ``namespace``) matched to the workload
   (``workload_of_pod``): the pod's own labels when the exporter copies them onto the series
   (``aistack_io_job_id`` / ``aistack_io_allocation``: Prometheus names of our ``aistack.io/job-id`` and
   ``aistack.io/allocation`` pod labels), else its name: a job's pod is ``<instance>-job-<id>-<attempt>-<5>``
   (the Job's name + the Job controller's suffix, ``k8s_manifest``), a server's pod is KubeSpawner's
   ``jupyter-{user_server}`` (``server_pod_names``) or the ``pod`` the workload names. Exact for a whole GPU
   or a MIG instance; on a *shared* GPU the exporter repeats the device's values on each pod's series (DCGM
   has no per-process figures under time-slicing), so a share's pod series is still the device's upper
   bound and its memory is not charged to it -- what the mapping adds there is *whose* series it is;
3. **devices**: a whole GPU or a MIG instance held by one workload is that workload's; a *share*
   (milli-GPU) gets the device's activity as an upper bound (several shares use one device): an idle
   device means every share on it is idle, a busy one means none of them is judged idle (conservative:
   culling never stops a share because a neighbour made the device look idle, nor the other way round).
"""
from __future__ import annotations

import os
import re

from .samples import GPUSample, Reading, WorkloadSample

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


JOB_POD = re.compile(r"^(?P<instance>[a-z0-9][a-z0-9-]*)-job-(?P<id>\d+)-(?P<attempt>\d+)-[a-z0-9]{5}$")
POD_LABELS = (("aistack_io_job_id", "job:"), ("aistack_io_allocation", "alloc:"))


def server_pod_names(user: str, server_name: str = "", template: str = "jupyter-{user_server}") -> set[str]:
    """The names KubeSpawner gives a server's pod (both its slug schemes, 'safe' and 'escape'), from its own
    slug functions when kubespawner is installed, else the plain lowercase DNS form."""
    try:
        from kubespawner.slugs import escape_slug, multi_slug, safe_slug
    except ImportError:  # the service without kubespawner: the plain form of simple names
        plain = re.sub(r"[^a-z0-9-]+", "-", f"{user}--{server_name}" if server_name else user).lower()
        return {template.format(user_server=plain, username=plain)}
    safe_user = safe_slug(user, max_length=48)
    if server_name:
        safe_server = safe_slug(server_name, max_length=48)
        safe = (multi_slug([user, server_name], max_length=48) if len(safe_user) + len(safe_server) + 2 > 48
                else f"{safe_user}--{safe_server}")
        escaped = f"{escape_slug(user)}--{escape_slug(server_name)}"
    else:
        safe, escaped = safe_user, escape_slug(user)
    return {template.format(user_server=safe, username=safe_user), template.format(user_server=escaped,
                                                                                   username=escape_slug(user))}


def workload_of_pod(g: GPUSample, labels: dict | None = None) -> str | None:
    """``job:<id>`` / ``alloc:<id>`` from a series' copied pod labels, or a job from its pod's name (None:
    not ours, or a server's pod: those are matched by name against the workloads)."""
    for label, kind in POD_LABELS:
        if (labels or {}).get(label):
            return kind + str(labels[label])
    m = JOB_POD.match(g.pod or "")
    return f"job:{m['id']}" if m else None


def _pod_index(reading: Reading) -> dict[str, list[GPUSample]]:
    """The pod series of a reading by workload key (``workload_of_pod``) and by ``pod:<ns>/<name>``."""
    out: dict[str, list[GPUSample]] = {}
    for g in reading.gpus:
        if not g.pod:
            continue
        key = workload_of_pod(g, getattr(g, "pod_labels", None))
        if key:
            out.setdefault(key, []).append(g)
        out.setdefault(f"pod:{g.namespace}/{g.pod}", []).append(g)
        out.setdefault(f"pod:/{g.pod}", []).append(g)  # a workload that names no namespace
    return out


def _pods_of(w: dict, index: dict) -> list[GPUSample]:
    got = index.get(w["workload"])
    if got:
        return got
    names = {w["pod"]} if w.get("pod") else set()
    if w["workload"].startswith("alloc:") and w.get("user"):
        names |= server_pod_names(w["user"], w.get("server_name") or "")
    for name in sorted(names):
        got = index.get(f"pod:{w.get('namespace', '')}/{name}")
        if got:
            return got
    return []


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
    pods = _pod_index(reading)
    out = []
    for w in workloads:
        asg = w.get("assignment") or {}
        devices = _device_keys(asg)
        if not devices:
            continue
        key = w["workload"]
        util = mem = None
        procs = by_proc.get(key)
        shared = 0 < int(asg.get("gpu_milli") or 0) < 1000
        series = [g for g in _pods_of(w, pods) if g.activity_pct is not None or g.mem_used_mib is not None]
        if procs:
            util = sum(p.util_pct or 0.0 for p in procs)
            mem = sum(p.mem_used_mib or 0.0 for p in procs)
        elif series:  # its pod's series, one per device it uses
            acts = [g.activity_pct for g in series if g.activity_pct is not None]
            util = max(acts) if acts else None
            mems = [g.mem_used_mib for g in series if g.mem_used_mib is not None]
            mem = None if shared or not mems else sum(mems)  # a share's series carries the device's memory
        else:
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
