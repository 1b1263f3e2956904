"""``DCGMSource``: GPU metrics of a Kubernetes cluster read from NVIDIA's DCGM exporter (Prometheus text).

The exporter (``dcgm-exporter``, port 9400, ``/metrics``) labels each series with the GPU (``gpu``,
``UUID``, ``modelName``, ``Hostname``), its MIG instance (``GPU_I_PROFILE``, ``GPU_I_ID``) and, with its
Kubernetes pod mapping on, the pod using it (``namespace``, ``pod``, ``container``). Read here:
``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_FB_USED`` / ``DCGM_FI_DEV_FB_FREE`` (MiB),
``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (0..1; what culling prefers: it is honest on MIG, where GPU_UTIL is not
reported) and ``DCGM_FI_DEV_XID_ERRORS`` (the last XID; non-zero means the GPU reported one). Parsing is
prometheus_client's own text parser. Where the exporter also copies the pods' labels onto the series, ours
(``aistack_io_*``, Prometheus names of ``aistack.io/*``) are kept on the sample as ``pod_labels``: the
attribution's first way to tell whose pod a series is (``attribution.workload_of_pod``).
"""
from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .samples import GPUSample, Reading, SampleSource, SourceUnavailable, XIDEvent

FIELDS = {"DCGM_FI_DEV_GPU_UTIL": "util_pct", "DCGM_FI_DEV_FB_USED": "mem_used_mib",
          "DCGM_FI_DEV_FB_FREE": "_fb_free", "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "engine_active",
          "DCGM_FI_DEV_XID_ERRORS": "_xid"}

OUR_LABELS = "aistack_io_"  # our pod labels (aistack.io/job-id -> aistack_io_job_id) copied by the exporter


def gpu_key(labels: dict) -> str:
    gpu = labels.get("gpu", "?")
    if labels.get("GPU_I_ID"):
        return f"{gpu}/mig-{labels.get('GPU_I_PROFILE', '')}/{labels['GPU_I_ID']}"
    return gpu


def parse(text: str, default_node: str = "") -> Reading:
    """One Reading from an exporter page: a GPUSample per (node, GPU or MIG instance, pod)."""
    r = Reading(ts=time.time())
    samples: dict[tuple, GPUSample] = {}
    extra: dict[tuple, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            attr = FIELDS.get(s.name)
            if attr is None:
                continue
            lb = s.labels
            node = lb.get("Hostname") or default_node
            key = (node, gpu_key(lb), lb.get("namespace", ""), lb.get("pod", ""))
            g = samples.get(key)
            if g is None:
                g = samples[key] = GPUSample(node=node, gpu=key[1], model=lb.get("modelName", ""),
                                             uuid=lb.get("UUID", ""), namespace=key[2], pod=key[3])
                ours = {k: v for k, v in lb.items() if k.startswith(OUR_LABELS)}
                if ours:
                    g.pod_labels = ours  # a plain attribute: read with getattr(g, "pod_labels", None)
            if attr.startswith("_"):
                extra.setdefault(key, {})[attr] = s.value
            else:
                setattr(g, attr, float(s.value))
    for key, g in samples.items():
        x = extra.get(key, {})
        if "_fb_free" in x and g.mem_used_mib is not None:
            g.mem_total_mib = g.mem_used_mib + x["_fb_free"]
        if x.get("_xid"):
            r.xids.append(XIDEvent(node=g.node, gpu=g.gpu, xid=int(x["_xid"]), ts=r.ts))
    r.gpus = list(samples.values())
    return r


class DCGMSource(SampleSource):
    """Reads every exporter URL (one per node, or the exporter Service) each ``read``."""

    name = "dcgm"

    def __init__(self, urls: list[str], timeout_s: float = 5.0):
        if not urls:
            raise SourceUnavailable("no DCGM exporter URL configured (Monitor.dcgm_urls)")
        self.urls, self.timeout_s = list(urls), timeout_s
        self._last_xid: dict = {}

    def read(self) -> Reading:
        out = Reading(ts=time.time())
        for url in self.urls:
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                    text = resp.read().decode()
            except OSError as e:
                out.errors.append(f"DCGM exporter {url}: {e}")
                continue
            r = parse(text)
            out.gpus += r.gpus
            for x in r.xids:  # the exporter repeats the last XID: report each change once
                if self._last_xid.get((x.node, x.gpu)) != x.xid:
                    self._last_xid[(x.node, x.gpu)] = x.xid
                    out.xids.append(x)
        if len(out.errors) == len(self.urls):
            raise SourceUnavailable("; ".join(out.errors))
        return out
