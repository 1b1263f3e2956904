"""/services/aistack/metrics and /services/aistack/health: both need a token (least disclosure).

Metrics carry tenant labels (and /health the loop's last error): nothing for anonymous readers.
- ``metrics``: the job system's registry (``job_runner.controller.metrics``). A Prometheus scrape sends
  ``Authorization: Bearer <AIStackService.metrics_token>`` (``$AISTACK_METRICS_TOKEN``); the hub's token, a
  JupyterHub admin and a token with the scope ``custom:aistack:metrics`` see every series too. Any other
  JupyterHub user with access to the service sees only the series of their own tenants (their groups)
  and the ones without a tenant label.
- ``health``: any valid token; 200 ``{ok: true, leader, ticks, failing: null}``, or 503 with ``ok: false``
  and ``failing: {reason, since, failures}`` while scheduling passes fail (until one succeeds).
"""
from __future__ import annotations

import hmac

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from aistack_hub.api.base import APIHandler
from aistack_hub.hubconfig import METRICS_SCOPE  # a JupyterHub custom scope, defined for the hub there
from aistack_hub.services.context import Identity
from job_runner.controller.metrics import REGISTRY

__all__ = ["REGISTRY", "render", "MetricsHandler", "HealthHandler", "METRICS_SCOPE"]



class _OnlyTenants:
    """The registry's metrics with only the samples of ``tenants`` (and those without a tenant label)."""

    def __init__(self, registry, tenants):
        self.registry, self.tenants = registry, set(tenants)

    def collect(self):
        for family in self.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s for s in family.samples if "tenant" not in s.labels or s.labels["tenant"] in self.tenants]
            yield out


def render(tenants=None) -> tuple[bytes, str]:
    """The exposition text: every series, or (``tenants`` given) only those tenants' series."""
    source = REGISTRY if tenants is None else _OnlyTenants(REGISTRY, tenants)
    return generate_latest(source), CONTENT_TYPE_LATEST


class _TokenHandler(APIHandler):
    """The API's token check, plus the configured scrape token."""

    def initialize(self, api, controller=None, metrics_token: str = ""):
        super().initialize(api)
        self.controller = controller
        self.metrics_token = metrics_token

    async def prepare(self):
        token = self._token()
        if token and self.metrics_token and hmac.compare_digest(token.encode(), self.metrics_token.encode()):
            self.identity = Identity(name="metrics-scraper", kind="service", scopes=frozenset({METRICS_SCOPE}))
            return
        await super().prepare()


class MetricsHandler(_TokenHandler):
    def get(self):
        ident = self.identity
        every = ident.is_admin or METRICS_SCOPE in ident.scopes
        body, ctype = render(None if every else ident.groups)
        self.set_header("Content-Type", ctype)
        self.finish(body)


class HealthHandler(_TokenHandler):
    def get(self):
        ctl = self.controller
        failing = ctl.failing
        body = {"ok": failing is None, "leader": ctl.is_leader, "ticks": ctl.ticks,
                "failing": dict(failing) if failing else None}
        if failing:
            body.update(error="scheduling_failing", message=f"scheduling passes fail: {failing['reason']}")
        self.write_json(body, 503 if failing else 200)


# --- GPU monitoring (issue 15 B): per-GPU and per-workload gauges, set by each sampling pass -------------
from prometheus_client import Gauge  # noqa: E402

GPU_UTIL = Gauge("aistack_gpu_utilization_percent", "GPU utilisation (graphics engine activity where known)",
                 ["node", "gpu", "model"], registry=REGISTRY)
GPU_MEM = Gauge("aistack_gpu_memory_used_bytes", "GPU memory in use", ["node", "gpu", "model"], registry=REGISTRY)
WORKLOAD_UTIL = Gauge("aistack_workload_gpu_utilization_percent", "A workload's GPU activity (its processes, its "
                      "pod, or its device)", ["tenant", "user", "workload"], registry=REGISTRY)
WORKLOAD_MEM = Gauge("aistack_workload_gpu_memory_used_bytes", "A workload's GPU memory in use",
                     ["tenant", "user", "workload"], registry=REGISTRY)


def publish_gpu_samples(reading, workload_samples) -> None:
    """Set the gauges to this pass's samples (series of gone GPUs/workloads disappear)."""
    for g in (GPU_UTIL, GPU_MEM, WORKLOAD_UTIL, WORKLOAD_MEM):
        g.clear()
    for s in reading.gpus:
        labels = (s.node, s.gpu, s.model)
        if s.activity_pct is not None:
            GPU_UTIL.labels(*labels).set(s.activity_pct)
        if s.mem_used_mib is not None:
            GPU_MEM.labels(*labels).set(s.mem_used_mib * 1024 * 1024)
    for w in workload_samples:
        labels = (w.tenant, w.user, w.workload)
        if w.util_pct is not None:
            WORKLOAD_UTIL.labels(*labels).set(w.util_pct)
        if w.mem_used_mib is not None:
            WORKLOAD_MEM.labels(*labels).set(w.mem_used_mib * 1024 * 1024)
# --- end GPU monitoring ---
