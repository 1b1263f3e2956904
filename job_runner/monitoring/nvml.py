"""``NVMLSource``: per-GPU utilisation and memory, per-process use and XID errors, read with NVML
(``nvidia-ml-py``, imported as ``pynvml``) on the machine itself: the embedded deployment.

Per GPU: ``nvmlDeviceGetUtilizationRates`` (``.gpu``, % of the last sample period a kernel ran),
``nvmlDeviceGetMemoryInfo``. Per process: ``nvmlDeviceGetComputeRunningProcesses`` (memory) and
``nvmlDeviceGetProcessUtilization`` (SM % since the last read). XID errors: an event set registered for
``nvmlEventTypeXidCriticalError``, polled without waiting. Where NVML cannot start (no driver: this
development machine) the source raises ``SourceUnavailable("no NVML: ...")`` at once, so the monitor says
so instead of reporting zeros.
"""
from __future__ import annotations

import time

from .samples import GPUSample, ProcessSample, Reading, SampleSource, SourceUnavailable, XIDEvent

MIB = 1024 * 1024


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NVMLSource(SampleSource):
    name = "nvml"

    def __init__(self, node: str, nvml=None, xid_events: bool = True):
        """``nvml``: the pynvml module (default: imported here)."""
        self.node = node
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as e:  # the package is a dependency; a broken install is said plainly
                raise SourceUnavailable(f"no NVML: nvidia-ml-py is not installed ({e})") from e
        self.nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
            raise SourceUnavailable(f"no NVML: {e or type(e).__name__} (no NVIDIA driver on this machine)") from e
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self._last_ts = {i: 0 for i in range(len(self.handles))}
        self.events = None
        if xid_events and self.handles:
            try:
                self.events = nvml.nvmlEventSetCreate()
                for h in self.handles:
                    nvml.nvmlDeviceRegisterEvents(h, nvml.nvmlEventTypeXidCriticalError, self.events)
            except Exception:  # noqa: BLE001 - events are not supported on every GPU (e.g. some vGPUs)
                self.events = None

    def _device(self, i: int, h, r: Reading):
        nv = self.nvml
        s = GPUSample(node=self.node, gpu=str(i))
        try:
            s.model = _text(nv.nvmlDeviceGetName(h))
            s.uuid = _text(nv.nvmlDeviceGetUUID(h))
            s.util_pct = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            s.mem_used_mib, s.mem_total_mib = mem.used / MIB, mem.total / MIB
        except Exception as e:  # noqa: BLE001 - a GPU fallen off the bus says so here
            r.errors.append(f"GPU {i} of {self.node}: {e}")
        r.gpus.append(s)
        mem_by_pid = {}
        try:
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                mem_by_pid[int(p.pid)] = (p.usedGpuMemory or 0) / MIB
        except Exception as e:  # noqa: BLE001
            r.errors.append(f"GPU {i} of {self.node}: processes: {e}")
        util_by_pid = {}
        try:
            for u in nv.nvmlDeviceGetProcessUtilization(h, self._last_ts[i]):
                util_by_pid[int(u.pid)] = float(u.smUtil)
                self._last_ts[i] = max(self._last_ts[i], int(u.timeStamp))
        except Exception:  # noqa: BLE001 - NVMLError_NotFound: no process ran since the last read
            pass
        for pid in sorted(set(mem_by_pid) | set(util_by_pid)):
            r.processes.append(ProcessSample(node=self.node, gpu=str(i), pid=pid,
                                             util_pct=util_by_pid.get(pid, 0.0), mem_used_mib=mem_by_pid.get(pid)))

    def _xids(self, r: Reading):
        nv = self.nvml
        while self.events is not None:
            try:
                ev = nv.nvmlEventSetWait_v2(self.events, 0)
            except Exception:  # noqa: BLE001 - NVMLError_Timeout: nothing pending
                return
            gpu = next((str(i) for i, h in enumerate(self.handles) if h == ev.device), "?")
            r.xids.append(XIDEvent(node=self.node, gpu=gpu, xid=int(ev.eventData), ts=time.time()))

    def read(self) -> Reading:
        r = Reading(ts=time.time())
        for i, h in enumerate(self.handles):
            self._device(i, h, r)
        self._xids(r)
        return r

    def close(self):
        try:
            if self.events is not None:
                self.nvml.nvmlEventSetFree(self.events)
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
