"""Render a GPU slice request into Kubernetes resources, per slice backend.

Kubernetes-only. The slice logic itself (what a slice is, what it costs, where it fits) lives in the
scheduling core (``job_runner.scheduling``); this module only translates a ``SliceRequest`` (and
optionally the core's ``Assignment``) into what a pod needs on a given cluster:

- ``whole``: whole GPUs as ``nvidia.com/gpu`` (NVIDIA device plugin).
- ``mig``: MIG instances as ``nvidia.com/mig-<profile>`` (device plugin, ``mixed`` strategy), or
  ``nvidia.com/gpu`` on nodes labelled ``<product>-MIG-<profile>`` (``single`` strategy).
- ``time-slice``: shares as ``nvidia.com/gpu.shared`` replicas (device plugin time-slicing or MPS with
  ``renameByDefault: true``); a share of ``gpu_milli`` takes ceil(gpu_milli * replicas / 1000) replicas.
- ``hami``: shares as ``nvidia.com/gpu`` + ``nvidia.com/gpumem`` (MiB) + ``nvidia.com/gpucores`` (%).

The backend is a setting because clusters differ. Which GPU model a pod lands on is a node selector
(or a required node affinity for several models) on the GPU Feature Discovery label
``nvidia.com/gpu.product``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from traitlets import Bool, CaselessStrEnum, Dict, Int, List, Unicode
from traitlets.config import LoggingConfigurable

GPU_RESOURCE = "nvidia.com/gpu"
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
HAMI_MEMORY_RESOURCE = "nvidia.com/gpumem"
HAMI_CORES_RESOURCE = "nvidia.com/gpucores"
PRODUCT_LABEL = "nvidia.com/gpu.product"
HOSTNAME_LABEL = "kubernetes.io/hostname"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

LABEL_PREFIX = "aistack.io/"
TENANT_LABEL = LABEL_PREFIX + "tenant"
PROFILE_LABEL = LABEL_PREFIX + "profile"
SLICE_KIND_LABEL = LABEL_PREFIX + "slice-kind"
WORKLOAD_LABEL = LABEL_PREFIX + "workload"
SLICE_ANNOTATION = LABEL_PREFIX + "slice"
ASSIGNMENT_ANNOTATION = LABEL_PREFIX + "assignment"

BACKENDS = ("whole", "mig", "time-slice", "hami")

# GPU Feature Discovery values of nvidia.com/gpu.product for the core's model names.
# Several values per model: SXM and PCIe boards are one model for the scheduler.
DEFAULT_PRODUCT_LABELS = {
    "A100-40GB": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"],
    "A100-80GB": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"],
    "H100-80GB": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
    "H200": ["NVIDIA-H200"],
    "A30": ["NVIDIA-A30"],
    "T4": ["Tesla-T4"],
    "L4": ["NVIDIA-L4"],
    "L40S": ["NVIDIA-L40S"],
    "A10": ["NVIDIA-A10"],
    "V100M16": ["Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB"],
    "V100M32": ["Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB"],
    "P100": ["Tesla-P100-PCIE-16GB"],
}


class SliceNotSupported(ValueError):
    """The configured backend cannot express this slice on Kubernetes."""


_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """A valid Kubernetes label value (<= 63 chars, alphanumeric at both ends) derived from ``text``."""
    value = _LABEL_VALUE_BAD.sub("-", str(text))[:63]
    return value.strip("-_.")


_DNS_BAD = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str, max_len: int = 63) -> str:
    """A valid DNS-1123 label (namespace and object names) derived from ``text``."""
    value = _DNS_BAD.sub("-", str(text).lower())[:max_len].strip("-")
    return value or "x"


@dataclass
class KubeSlice:
    """What a pod needs for one slice: container resources, placement and metadata."""

    limits: dict = field(default_factory=dict)  # resource name -> quantity string
    requests: dict = field(default_factory=dict)
    node_selector: dict = field(default_factory=dict)
    node_affinity_terms: list = field(default_factory=list)  # V1NodeSelectorTerm dicts (ORed)
    tolerations: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

    def container_resources(self) -> dict:
        """``V1ResourceRequirements`` as a dict for a container spec."""
        out = {}
        if self.limits:
            out["limits"] = dict(self.limits)
        if self.requests:
            out["requests"] = dict(self.requests)
        return out

    def pod_spec_fields(self) -> dict:
        """``nodeSelector``, ``affinity`` and ``tolerations`` of a pod spec (only those that are set)."""
        spec = {}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.node_affinity_terms:
            spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [dict(t) for t in self.node_affinity_terms]}}}
        if self.tolerations:
            spec["tolerations"] = [dict(t) for t in self.tolerations]
        return spec


class SliceRenderer(LoggingConfigurable):
    """Turns the scheduling core's slice requests into Kubernetes resources for one cluster."""

    backend = CaselessStrEnum(
        BACKENDS,
        default_value="whole",
        config=True,
        help="""How this cluster exposes GPU slices: 'whole' (nvidia.com/gpu only), 'mig'
        (nvidia.com/mig-<profile>), 'time-slice' (nvidia.com/gpu.shared replicas of the NVIDIA device
        plugin's time-slicing or MPS) or 'hami' (nvidia.com/gpumem + nvidia.com/gpucores).
        Whole GPUs are nvidia.com/gpu in every backend.""",
    )
    mig_strategy = CaselessStrEnum(
        ("mixed", "single"),
        default_value="mixed",
        config=True,
        help="""The device plugin's MIG strategy: 'mixed' exposes nvidia.com/mig-<profile>; 'single'
        exposes MIG instances as nvidia.com/gpu on nodes whose product label ends in -MIG-<profile>.""",
    )
    time_slice_replicas = Int(
        4,
        config=True,
        help="""Replicas per GPU in the device plugin's time-slicing config (backend 'time-slice'):
        one replica is 1000/replicas milli-GPU.""",
    )
    product_labels = Dict(
        config=True,
        help="""GPU model name of the slice catalog -> list of nvidia.com/gpu.product label values
        (GPU Feature Discovery) of that model. Models not listed use their own name as the value.""",
    )

    def _product_labels_default(self):
        return {k: list(v) for k, v in DEFAULT_PRODUCT_LABELS.items()}

    shared_product_suffix = Unicode(
        "-SHARED",
        config=True,
        help="""GPU Feature Discovery appends this to nvidia.com/gpu.product on nodes whose GPUs are
        shared by time-slicing/MPS (e.g. Tesla-T4-SHARED): shares select those values.""",
    )
    gpu_tolerations = List(
        [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        config=True,
        help="Tolerations added to pods that use a GPU (GPU nodes are commonly tainted nvidia.com/gpu).",
    )
    pin_to_assigned_node = Bool(
        True,
        config=True,
        help="""Add a kubernetes.io/hostname node selector for the node the scheduling core assigned,
        so the cluster's placement matches the core's accounting. Turn off when the core's inventory
        does not name the cluster's nodes.""",
    )
    kueue_queue_name_template = Unicode(
        "",
        config=True,
        help="""If set, pods and Jobs get the label kueue.x-k8s.io/queue-name with this value;
        '{tenant}' is replaced by the tenant's name (e.g. '{tenant}-queue'). Empty: no Kueue.""",
    )
    limit_cpu = Bool(
        True,
        config=True,
        help="Set the CPU limit equal to the slice's CPU (requests are always set).",
    )

    # -- what the backend can express -------------------------------------------------------------

    def supports(self, request) -> bool:
        """True when this backend can render ``request``."""
        try:
            self.gpu_resources(request)
        except SliceNotSupported:
            return False
        return True

    def gpu_resources(self, request) -> dict:
        """Extended resources (name -> integer quantity string) of ``request`` on this backend."""
        kind = request.kind
        if kind == "cpu":
            return {}
        if kind == "whole":
            return {GPU_RESOURCE: str(request.gpus)}
        if kind == "mig":
            if self.backend != "mig":
                raise SliceNotSupported(
                    f"MIG slice {request.mig_profile} needs the 'mig' slice backend (this cluster uses '{self.backend}')")
            if self.mig_strategy == "single":
                return {GPU_RESOURCE: "1"}
            return {f"nvidia.com/mig-{request.mig_profile}": "1"}
        if kind == "share":
            if self.backend == "time-slice":
                replicas = max(1, math.ceil(request.gpu_milli * self.time_slice_replicas / 1000))
                return {SHARED_GPU_RESOURCE: str(replicas)}
            if self.backend == "hami":
                res = {GPU_RESOURCE: "1", HAMI_CORES_RESOURCE: str(max(1, math.ceil(request.gpu_milli / 10)))}
                if request.gpu_mem_mib:
                    res[HAMI_MEMORY_RESOURCE] = str(request.gpu_mem_mib)
                return res
            raise SliceNotSupported(
                f"a {request.gpu_milli / 10:g}% GPU share needs the 'time-slice' or 'hami' slice backend "
                f"(this cluster uses '{self.backend}')")
        raise SliceNotSupported(f"unknown slice kind {kind!r}")

    # -- placement -------------------------------------------------------------------------------

    def product_values(self, request) -> list[str]:
        """nvidia.com/gpu.product values acceptable for ``request`` (empty: any GPU)."""
        models = list(request.gpu_models)
        if request.kind == "mig" and not models:
            models = list(request.mig_models())
        values = []
        for model in models:
            for value in self.product_labels.get(model, [model]):
                if request.kind == "mig" and self.mig_strategy == "single":
                    value = f"{value}-MIG-{request.mig_profile}"
                elif request.kind == "share" and self.backend == "time-slice":
                    value += self.shared_product_suffix
                if value not in values:
                    values.append(value)
        return values

    # -- the whole rendering ---------------------------------------------------------------------

    def render(self, request, *, tenant: str, profile: str = "", workload: str = "server",
               assignment=None) -> KubeSlice:
        """Everything a pod needs for ``request``. Raises SliceNotSupported if the backend can't."""
        out = KubeSlice()
        gpu = self.gpu_resources(request)
        out.limits.update(gpu)  # extended resources: requests default to limits
        if request.cpu_milli:
            out.requests["cpu"] = f"{request.cpu_milli}m"
            if self.limit_cpu:
                out.limits["cpu"] = f"{request.cpu_milli}m"
        if request.memory_mib:
            # memory limit = request: the slice is what was charged, and going over is an OOM kill.
            out.requests["memory"] = f"{request.memory_mib}Mi"
            out.limits["memory"] = f"{request.memory_mib}Mi"

        if gpu:
            values = self.product_values(request)
            if len(values) == 1:
                out.node_selector[PRODUCT_LABEL] = values[0]
            elif values:
                out.node_affinity_terms.append({"matchExpressions": [
                    {"key": PRODUCT_LABEL, "operator": "In", "values": values}]})
            out.tolerations.extend(dict(t) for t in self.gpu_tolerations)
            if self.backend == "hami" and request.gpu_models:
                # HAMi's own scheduler extender filters GPU types by this annotation.
                out.annotations["nvidia.com/use-gputype"] = ",".join(request.gpu_models)

        if assignment is not None:
            if self.pin_to_assigned_node and getattr(assignment, "node", None):
                out.node_selector[HOSTNAME_LABEL] = assignment.node
            out.annotations[ASSIGNMENT_ANNOTATION] = json.dumps(assignment.to_dict(), sort_keys=True)

        out.labels.update({
            TENANT_LABEL: label_value(tenant),
            SLICE_KIND_LABEL: request.kind,
            WORKLOAD_LABEL: workload,
        })
        if profile:
            out.labels[PROFILE_LABEL] = label_value(profile)
        queue = self.kueue_queue_name(tenant)
        if queue:
            out.labels[KUEUE_QUEUE_LABEL] = queue
        out.annotations[SLICE_ANNOTATION] = json.dumps(request.to_dict(), sort_keys=True)
        out.env.update({"AISTACK_TENANT": tenant, "AISTACK_SLICE_KIND": request.kind})
        if profile:
            out.env["AISTACK_PROFILE"] = profile
        return out

    def kueue_queue_name(self, tenant: str) -> str:
        if not self.kueue_queue_name_template:
            return ""
        return label_value(self.kueue_queue_name_template.replace("{tenant}", dns_label(tenant)))

    # -- a second, cluster-side quota ------------------------------------------------------------

    def resource_quota_hard(self, quota) -> dict:
        """``ResourceQuota.spec.hard`` for a tenant ``Quota`` of the core: a safety net, not the quota.

        The service's quota (milli-GPU across all slice kinds) is the exact one. Kubernetes counts
        each extended resource separately, so each GPU resource is capped on its own at the tenant's
        total: ``nvidia.com/gpu`` at whole GPUs, ``nvidia.com/gpu.shared`` at replicas ('time-slice'),
        ``nvidia.com/gpucores`` at percent ('hami'). MIG instances are left to the service's quota.
        """
        hard = {}
        if quota.cpu_milli is not None:
            hard["requests.cpu"] = f"{quota.cpu_milli}m"
        if quota.memory_mib is not None:
            hard["requests.memory"] = f"{quota.memory_mib}Mi"
        if quota.gpu_milli is not None:
            if self.backend == "time-slice":
                hard[f"requests.{SHARED_GPU_RESOURCE}"] = str(quota.gpu_milli * self.time_slice_replicas // 1000)
                hard[f"requests.{GPU_RESOURCE}"] = str(quota.gpu_milli // 1000)
            elif self.backend == "hami":
                hard[f"requests.{HAMI_CORES_RESOURCE}"] = str(quota.gpu_milli // 10)
                hard[f"requests.{GPU_RESOURCE}"] = str(max(1, quota.gpu_milli // 1000) if quota.gpu_milli else 0)
            else:
                hard[f"requests.{GPU_RESOURCE}"] = str(quota.gpu_milli // 1000)
        return hard

    # -- the core's inventory from the cluster's nodes -------------------------------------------

    def inventory_config(self, nodes: list[dict]) -> list[dict]:
        """``Inventory.from_config`` items for Kubernetes nodes (API JSON), from the GPU Feature
        Discovery labels: the scheduling core then places on the cluster's real node names.
        GPU model from nvidia.com/gpu.product (reverse of product_labels; -SHARED/-MIG-* suffixes
        dropped), count from nvidia.com/gpu.count, MIG-enabled when the node offers nvidia.com/mig-*."""
        by_product = {v: model for model, values in self.product_labels.items() for v in values}
        items = []
        for node in nodes:
            meta, status = node.get("metadata", {}), node.get("status", {})
            labels = meta.get("labels") or {}
            alloc = status.get("allocatable") or {}
            product = labels.get(PRODUCT_LABEL, "")
            for suffix in (self.shared_product_suffix, "-MIG-"):
                if suffix and suffix in product:
                    product = product.split(suffix)[0]
            gpus = int(labels.get("nvidia.com/gpu.count") or alloc.get(GPU_RESOURCE) or 0) if product else 0
            item = {"name": meta["name"], "cpu_milli": _milli(alloc.get("cpu", "0")),
                    "memory_mib": _mib(alloc.get("memory", "0")), "gpus": gpus,
                    "labels": {k: v for k, v in labels.items() if k.startswith("nvidia.com/")}}
            if gpus:
                item["gpu_model"] = by_product.get(product, product)
                item["mig_enabled"] = any(k.startswith("nvidia.com/mig-") for k in alloc)
            items.append(item)
        return items


def _milli(q: str) -> int:
    q = str(q)
    if q.endswith("m"):
        return int(q[:-1])
    return int(float(q) * 1000) if q[-1].isdigit() else int(float(q[:-1]) * 1000 * {"k": 1000}.get(q[-1], 1))


_BINARY = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2, "Pi": 1024 ** 3}
_DECIMAL = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _mib(q: str) -> int:
    q = str(q)
    for suffix, mult in _BINARY.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * mult)
    for suffix, mult in _DECIMAL.items():
        if q.endswith(suffix):
            return int(float(q[:-1]) * mult / MIB_BYTES)
    return int(float(q) / MIB_BYTES)


MIB_BYTES = 1024 * 1024
