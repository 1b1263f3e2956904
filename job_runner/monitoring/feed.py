"""Sample sources that are fed, for where no GPU exists (tests, demos): ``FeedSource`` (in memory) and
``FileSource`` (a JSON file another process writes; a test feeds a running service through it).

These stand in for the only thing that cannot exist on a machine without a GPU: the GPU's numbers. All
that happens to the samples afterwards (attribution, history, metrics, idle culling, alarms) is the real
code path.
"""
from __future__ import annotations

import json
import os
import threading
import time

from .samples import GPUSample, ProcessSample, Reading, SampleSource, SourceUnavailable, XIDEvent


def reading_from_dict(d: dict, now: float | None = None) -> Reading:
    """A Reading from JSON: ``{"gpus": [{node, gpu, util_pct, mem_used_mib, ...}], "processes": [...],
    "xids": [{node, gpu, xid}]}``."""
    ts = float(d.get("ts") or (time.time() if now is None else now))
    return Reading(ts=ts, gpus=[GPUSample(**g) for g in d.get("gpus", [])],
                   processes=[ProcessSample(**p) for p in d.get("processes", [])],
                   xids=[XIDEvent(**x) for x in d.get("xids", [])], errors=list(d.get("errors", [])))


class FeedSource(SampleSource):
    """Returns what was last ``feed``-ed (the same reading again until fed anew; XIDs once)."""

    name = "feed"

    def __init__(self, reading: Reading | None = None):
        self._lock = threading.Lock()
        self._reading = reading or Reading()

    def feed(self, reading: Reading):
        with self._lock:
            self._reading = reading

    def read(self) -> Reading:
        with self._lock:
            r = self._reading
            self._reading = Reading(ts=r.ts, gpus=r.gpus, processes=r.processes, errors=r.errors)
        return Reading(ts=time.time(), gpus=list(r.gpus), processes=list(r.processes), xids=list(r.xids),
                       errors=list(r.errors))


class FileSource(SampleSource):
    """Reads ``path`` (JSON, one reading as ``reading_from_dict`` takes it) on every ``read``; XIDs are
    reported once per change of the file."""

    name = "file"

    def __init__(self, path: str):
        self.path = path
        self._seen_xids: set = set()

    def read(self) -> Reading:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError as e:
            raise SourceUnavailable(f"no samples file {self.path}") from e
        except ValueError as e:
            raise SourceUnavailable(f"samples file {self.path} is not JSON: {e}") from e
        data = dict(data)
        data.pop("ts", None)
        r = reading_from_dict(data)
        fresh = []
        for x in r.xids:
            key = (x.node, x.gpu, x.xid, os.stat(self.path).st_mtime_ns)
            if key not in self._seen_xids:
                self._seen_xids.add(key)
                fresh.append(x)
        r.xids = fresh
        return r
