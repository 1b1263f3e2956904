"""GPU monitoring without a GPU: this machine has none, so the NVML driver cannot start (the sampler must
say "no NVML" plainly), NVML's read path runs against a stand-in driver module, and the monitor pass is fed
readings (``FeedSource``). DCGM text parsing uses a realistic dcgm-exporter page; attribution reads the
real ``/proc`` of real processes; history, metrics, retention and alarms run on a real SQLite database.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from job_runner.db import ALLOC_ALLOCATED, QUEUED, Allocation, Job, open_database
from job_runner.monitoring import alarms, store
from job_runner.monitoring.attribution import attribute, workload_of_pid
from job_runner.monitoring.dcgm import parse
from job_runner.monitoring.feed import FeedSource
from job_runner.monitoring.monitor import Monitor
from job_runner.monitoring.samples import GPUSample, ProcessSample, Reading, SourceUnavailable, XIDEvent

DCGM_PAGE = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a1111",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-alice"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a2222",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"} 0
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a1111",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-alice"} 61440
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a2222",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"} 81050
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a1111",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-alice"} 20480
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a2222",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"} 0
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a1111",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-alice"} 0
DCGM_FI_DEV_XID_ERRORS{gpu="1",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a2222",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"} 79
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a1111",device="nvidia0",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-alice"} 0.812345
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="1",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a2222",device="nvidia1",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"} 0.000000
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="2",UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a3333",device="nvidia2",modelName="NVIDIA A100-SXM4-80GB",Hostname="gpu-node-1",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",DCGM_FI_DRIVER_VERSION="550.54.15",container="notebook",namespace="research",pod="jupyter-bob"} 0.004
"""


def test_dcgm_exporter_page_is_parsed_per_gpu_mig_instance_and_pod():
    r = parse(DCGM_PAGE)
    by = {g.gpu: g for g in r.gpus}
    assert set(by) == {"0", "1", "2/mig-3g.40gb/1"}
    g0 = by["0"]
    assert (g0.node, g0.pod, g0.namespace, g0.model) == ("gpu-node-1", "jupyter-alice", "research", "NVIDIA A100-SXM4-80GB")
    assert g0.util_pct == 87 and g0.mem_used_mib == 20480 and g0.mem_total_mib == 20480 + 61440
    assert g0.activity_pct == pytest.approx(81.2345)  # engine activity wins over GPU_UTIL
    assert by["1"].activity_pct == 0 and by["2/mig-3g.40gb/1"].activity_pct == pytest.approx(0.4)
    assert [(x.gpu, x.xid) for x in r.xids] == [("1", 79)]  # GPU 0's 0 is "no XID"
    # attribution: the pod's series for a share, the MIG instance for a MIG slice
    ws = attribute(r, [
        {"workload": "alloc:1", "tenant": "t", "user": "alice", "namespace": "research", "pod": "jupyter-alice",
         "assignment": {"node": "gpu-node-1", "gpu_indices": [0], "gpu_milli": 250}},
        {"workload": "alloc:2", "tenant": "t", "user": "bob",
         "assignment": {"node": "gpu-node-1", "gpu_indices": [2], "mig": [2, "3g.40gb", 4]}},
        {"workload": "alloc:3", "tenant": "t", "user": "carol", "assignment": {"node": "gpu-node-1", "gpu_indices": [1]}},
    ], pid_resolver=lambda pid: None)
    got = {w.workload: round(w.util_pct, 2) for w in ws}
    assert got == {"alloc:1": 81.23, "alloc:2": 0.4, "alloc:3": 0.0}


def test_nvml_sampler_says_no_nvml_without_a_driver(tmp_path):
    from job_runner.monitoring.nvml import NVMLSource

    with pytest.raises(SourceUnavailable) as e:
        NVMLSource("node-1")  # the real pynvml; this machine has no NVIDIA driver
    assert str(e.value).startswith("no NVML:")
    m = Monitor(open_database(f"sqlite:///{tmp_path}/m.sqlite"), source="nvml", interval_s=1)
    assert m.open_source() is None and m.source_status.startswith("no NVML:")
    m.sample_once()
    (a,) = [x for x in store.open_alarms(m.db) if x["kind"] == "source"]
    assert "no NVML" in a["text"]


class StandInNVML:
    """A stand-in for the NVIDIA driver (what pynvml would call into): two GPUs, processes, one XID."""

    nvmlEventTypeXidCriticalError = 8

    def __init__(self):
        self.events = [SimpleNamespace(device="h1", eventData=48)]

    def nvmlInit(self): pass
    def nvmlShutdown(self): pass
    def nvmlDeviceGetCount(self): return 2
    def nvmlDeviceGetHandleByIndex(self, i): return f"h{i}"
    def nvmlDeviceGetName(self, h): return b"NVIDIA H100 80GB HBM3"
    def nvmlDeviceGetUUID(self, h): return f"GPU-{h}"
    def nvmlDeviceGetUtilizationRates(self, h): return SimpleNamespace(gpu=42 if h == "h0" else 0)
    def nvmlDeviceGetMemoryInfo(self, h): return SimpleNamespace(used=2 * 2**30, total=80 * 2**30)
    def nvmlEventSetCreate(self): return "es"
    def nvmlDeviceRegisterEvents(self, h, kind, es): pass
    def nvmlEventSetFree(self, es): pass

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=2**30)] if h == "h0" else []

    def nvmlDeviceGetProcessUtilization(self, h, last):
        if h != "h0":
            raise RuntimeError("NVMLError_NotFound")
        return [SimpleNamespace(pid=os.getpid(), smUtil=40, timeStamp=123)]

    def nvmlEventSetWait_v2(self, es, timeout_ms):
        if not self.events:
            raise RuntimeError("NVMLError_Timeout")
        return self.events.pop()


def test_nvml_read_path_with_a_stand_in_driver():
    from job_runner.monitoring.nvml import NVMLSource

    src = NVMLSource("node-1", nvml=StandInNVML())
    r = src.read()
    assert [(g.gpu, g.util_pct, g.mem_used_mib, g.model) for g in r.gpus] == [
        ("0", 42.0, 2048.0, "NVIDIA H100 80GB HBM3"), ("1", 0.0, 2048.0, "NVIDIA H100 80GB HBM3")]
    assert [(p.gpu, p.pid, p.util_pct, p.mem_used_mib) for p in r.processes] == [("0", os.getpid(), 40.0, 1024.0)]
    assert [(x.gpu, x.xid) for x in r.xids] == [("1", 48)]
    assert src._last_ts[0] == 123 and src.read().xids == []
    (a,) = alarms.xid_alarms(r.xids)
    assert a["severity"] == "danger" and "double-bit ECC" in a["text"]


def test_processes_are_attributed_through_the_real_proc_tree():
    # a "server" with AISTACK_ALLOCATION_ID and its "kernel" child (which inherits nothing we look at first)
    env = {**os.environ, "AISTACK_ALLOCATION_ID": "42"}
    code = "import subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)'], env={'PATH':'/usr/bin'}); print(c.pid, flush=True); time.sleep(60)"
    server = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        kernel = int(server.stdout.readline())
        assert workload_of_pid(kernel) == "alloc:42"  # found on its parent
        assert workload_of_pid(server.pid) == "alloc:42"
        r = Reading(gpus=[GPUSample("n", "0", util_pct=95.0)], processes=[ProcessSample("n", "0", kernel, 12.0, 500.0)])
        ws = attribute(r, [{"workload": "alloc:42", "assignment": {"node": "n", "gpu_indices": [0], "gpu_milli": 250}},
                           {"workload": "alloc:43", "assignment": {"node": "n", "gpu_indices": [0], "gpu_milli": 250}}])
        # alloc:42 by its process; alloc:43 (no process seen) gets the device as an upper bound: not idle
        assert [(w.workload, w.util_pct, w.mem_used_mib) for w in ws] == [("alloc:42", 12.0, 500.0),
                                                                         ("alloc:43", 95.0, None)]
    finally:
        server.kill()
        server.wait()


def _db_with_slice(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/m.sqlite")
    with db.session() as s:
        s.add(Allocation(id=7, user="alice", tenant="team-a", profile="gpu-1", state=ALLOC_ALLOCATED,
                         assignment={"node": "node-1", "gpu_indices": [1], "gpu_milli": 0}))
    return db


def test_monitor_pass_history_metrics_retention_and_alarms(tmp_path):
    from aistack_hub.metrics import publish_gpu_samples, render

    db = _db_with_slice(tmp_path)
    feed = FeedSource()
    m = Monitor(db, publish=publish_gpu_samples, source_obj=feed, interval_s=10, retention_s=100, prune_every=1,
                disk_paths=[str(tmp_path)], disk_full_pct=0.0, queue_stuck_s=60)
    t0 = time.time() - 50
    for k in range(5):
        feed.feed(Reading(gpus=[GPUSample("node-1", "0", util_pct=10.0 * k, mem_used_mib=100.0, mem_total_mib=1000.0),
                                GPUSample("node-1", "1", util_pct=0.0, mem_used_mib=0.0)],
                          xids=[XIDEvent("node-1", "0", 13)] if k == 0 else []))
        m.sample_once(t0 + 10 * k)
    hist = store.gpu_history(db, t0 - 1, t0 + 50, points=5)
    assert [s["gpu"] for s in hist] == ["node-1/0", "node-1/1"]
    assert [round(p["util_pct"]) for p in hist[0]["points"]] == [0, 10, 20, 30, 40]
    text = render()[0].decode()
    assert 'aistack_gpu_utilization_percent{gpu="0",model="",node="node-1"} 40.0' in text
    assert 'aistack_workload_gpu_utilization_percent{tenant="team-a",user="alice",workload="alloc:7"} 0.0' in text
    st = store.idle_state(db, 7)
    assert st.idle_since == t0 and st.last_util == 0.0
    kinds = {a["kind"]: a for a in store.open_alarms(db)}
    assert "GPU 0 of node-1 reported XID 13" in kinds["gpu_xid"]["text"] and "disk_full" in kinds
    # retention: a pass 200 s later prunes what is older than 100 s
    m.sample_once(t0 + 250)
    assert [len(s["points"]) for s in store.gpu_history(db, t0 - 1, t0 + 260, points=10)] == [1, 1]
    # a stuck queue: a job queued 2 min ago, none started
    import datetime as dt

    with db.session() as s:
        s.add(Job(name="j", user="bob", tenant="team-a", profile="gpu-1", state=QUEUED, notebook="{}",
                  created_at=dt.datetime.utcnow() - dt.timedelta(seconds=120)))
    (q,) = alarms.queue_alarms(db, 60, time.time())
    assert q["kind"] == "queue_stuck" and "1 job(s) queued" in q["text"]
    assert alarms.queue_alarms(db, 600, time.time()) == []
