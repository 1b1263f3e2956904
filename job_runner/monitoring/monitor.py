"""``Monitor``: the sampling pass (source -> workloads -> history, idle state, metrics, alarms) and the
idle decisions the hub's spawners ask for. Runs on the service's leader (``AIStackService``), in a
thread (every database call is blocking work).
"""
from __future__ import annotations

import time

from traitlets import Bool, CaselessStrEnum, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from . import alarms as _alarms
from . import store
from .attribution import attribute
from .culling import Decision, Policy, decide
from .samples import Reading, SourceUnavailable


class Monitor(LoggingConfigurable):
    """GPU monitoring and GPU-aware idle culling (docs/monitoring.md)."""

    source = CaselessStrEnum(["auto", "nvml", "dcgm", "file", "none"], "auto", help="""Where GPU samples come
        from: 'nvml' (this machine's GPUs, the embedded deployment), 'dcgm' (NVIDIA's DCGM exporter,
        ``dcgm_urls``: Kubernetes), 'file' (a JSON file another process writes, ``samples_file``: tests and
        demos where no GPU exists), 'none', or 'auto': 'dcgm' when ``dcgm_urls`` is set, else 'nvml' if it
        starts, else none (said in the log and as an alarm).""").tag(config=True)
    dcgm_urls = List(Unicode(), help="DCGM exporter metric URLs, e.g. http://dcgm-exporter.gpu:9400/metrics.").tag(config=True)
    samples_file = Unicode("", help="The JSON file of source 'file' (job_runner.monitoring.feed).").tag(config=True)
    node_name = Unicode("", help="The node NVML samples are reported for: the inventory's name of this machine "
                        "(default: the deployment's first inventory node).").tag(config=True)
    interval_s = Float(15.0, help="Seconds between sampling passes (0 turns monitoring off).").tag(config=True)
    retention_s = Float(7 * 86400.0, help="Samples older than this are deleted (bounded history).").tag(config=True)
    prune_every = Integer(40, help="Prune old samples every this many passes.").tag(config=True)
    history_points = Integer(240, help="Most points per GPU a history answer returns (buckets are averaged).").tag(config=True)
    stale_s = Float(0.0, help="A slice's newest sample older than this is 'unknown' (never idle); "
                    "0: three sampling intervals.").tag(config=True)

    idle_culling = Bool(True, help="GPU-aware idle culling on (tenants may override: gpu_idle_policies).").tag(config=True)
    idle_threshold_pct = Float(1.0, help="GPU activity (%) under which a server's GPU counts as idle.").tag(config=True)
    idle_s = Float(1800.0, help="Seconds of GPU idleness after which a server holding a GPU is stopped.").tag(config=True)
    idle_warn_s = Float(300.0, help="Seconds before the stop that the user is warned (JupyterLab, hub pages).").tag(config=True)
    max_keep_hours = Float(24.0, help="Longest 'keep for N hours' a user may ask for.").tag(config=True)

    disk_paths = List(Unicode(), help="Paths whose disks are watched (the service adds its data_dir).").tag(config=True)
    disk_full_pct = Float(90.0, help="Disk use (%) at which a disk alarm opens.").tag(config=True)
    queue_stuck_s = Float(1800.0, help="A queue whose oldest job waited this long with no job started since "
                          "raises an alarm.").tag(config=True)
    xid_hold_s = Float(3600.0, help="An XID alarm stays open this long after the GPU's last XID.").tag(config=True)

    def __init__(self, db, publish=None, source_obj=None, **kw):
        super().__init__(**kw)
        self.db = db
        self.publish = publish  # called with (reading, workload samples) after each pass (metrics)
        self._source = source_obj
        self._source_error = ""
        self.passes = 0
        self.last_pass_s = 0.0

    # -------------------------------------------------------------- sources
    def open_source(self):
        if self._source is not None or self.source == "none":
            return self._source
        kind = self.source
        if kind == "auto":
            kind = "dcgm" if self.dcgm_urls else "nvml"
        try:
            if kind == "dcgm":
                from .dcgm import DCGMSource
                self._source = DCGMSource(self.dcgm_urls)
            elif kind == "file":
                from .feed import FileSource
                if not self.samples_file:
                    raise SourceUnavailable("source 'file' needs Monitor.samples_file")
                self._source = FileSource(self.samples_file)
            else:
                from .nvml import NVMLSource
                self._source = NVMLSource(self.node_name or "localhost")
            self._source_error = ""
        except SourceUnavailable as e:
            if str(e) != self._source_error:
                self.log.warning("GPU monitoring: %s", e)
            self._source_error = str(e)
        return self._source

    @property
    def source_status(self) -> str:
        if self._source is not None:
            return f"reading ({self._source.name})"
        return self._source_error or "off"

    # -------------------------------------------------------------- policy
    def default_policy(self) -> Policy:
        return Policy(self.idle_culling, self.idle_threshold_pct, self.idle_s, self.idle_warn_s, self.max_keep_hours)

    def policy_for(self, tenant: str, overrides: dict | None = None) -> Policy:
        if overrides is None:
            overrides = store.policy_overrides(self.db)
        return self.default_policy().merged(overrides.get(tenant))

    @property
    def stale(self) -> float:
        return self.stale_s or 3 * max(self.interval_s, 1.0)

    # -------------------------------------------------------------- one pass
    def sample_once(self, now: float | None = None) -> dict:
        """One pass (blocking): read, attribute, store, fold into idle state, publish, alarms."""
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        src = self.open_source()
        raised, kinds = [], {"source", "disk_full", "queue_stuck", "gpu_xid"}
        reading = None
        if src is not None:
            try:
                reading = src.read()
            except SourceUnavailable as e:
                raised += _alarms.source_alarm(src.name, str(e))
        elif self.source != "none" and self._source_error:
            raised += _alarms.source_alarm(self.source, self._source_error)
        samples = []
        if reading is not None:
            reading.ts = now
            workloads = store.active_workloads(self.db)
            samples = attribute(reading, workloads)
            store.write_samples(self.db, reading, samples)
            overrides = store.policy_overrides(self.db)
            store.observe_idle(self.db, workloads, samples, lambda t: self.policy_for(t, overrides), now)
            raised += _alarms.xid_alarms(reading.xids)
            for err in reading.errors:
                raised.append({"kind": "source", "subject": err.split(":")[0], "severity": "warning", "text": err})
            if self.publish is not None:
                self.publish(reading, samples)
        raised += _alarms.disk_alarms(self.disk_paths, self.disk_full_pct)
        raised += _alarms.queue_alarms(self.db, self.queue_stuck_s, now)
        store.record_alarms(self.db, raised, kinds, now, {"gpu_xid": self.xid_hold_s})
        self.passes += 1
        if self.prune_every and self.passes % self.prune_every == 0:
            store.prune(self.db, now - self.retention_s)
        self.last_pass_s = time.perf_counter() - t0
        return {"gpus": len(reading.gpus) if reading else 0, "workloads": len(samples), "alarms": len(raised)}

    # -------------------------------------------------------------- culling answers
    def decision(self, allocation_id: int, tenant: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        st = store.idle_state(self.db, allocation_id)
        d = decide(st, self.policy_for(tenant), now, self.stale)
        if st is not None and d.action == "warn" and not st.warned_at:
            store.update_state(self.db, allocation_id, warned_at=now)
        if st is not None and d.action == "stop":
            store.update_state(self.db, allocation_id, stopped_at=now)
        return d

    def keep(self, allocation_id: int, tenant: str, hours: float, now: float | None = None) -> Decision:
        """The user's "keep for N hours" (ValueError: no such watched server, or too long)."""
        now = time.time() if now is None else now
        policy = self.policy_for(tenant)
        if not 0 < hours <= policy.max_keep_hours:
            raise ValueError(f"hours must be more than 0 and at most {policy.max_keep_hours:g} (tenant {tenant})")
        if not store.update_state(self.db, allocation_id, keep_until=now + hours * 3600, warned_at=None):
            raise LookupError(f"allocation {allocation_id} has no GPU samples: nothing to keep")
        return self.decision(allocation_id, tenant, now)

    def empty_reading(self) -> Reading:
        return Reading()
