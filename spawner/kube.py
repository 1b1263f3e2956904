"""KubeGPUSpawner: kubespawner's KubeSpawner with AIStack's GPU slices.

The mixin (``GPUSliceSpawnerMixin``) asks the ``aistack`` service for a slice before anything is created
(quota and placement by the one scheduler, refused over quota with the service's message). This class
turns the allocated profile into a kubespawner *profile* — ``kubespawner_override`` with the slice's
resources for the cluster's slice backend (``job_runner.binding.kube.SliceRenderer``), node selector on the
GPU product label, the node the scheduler chose, tolerations, labels and annotations for tenant and slice,
and optionally a Kueue queue — and lets KubeSpawner's own ``load_user_options`` apply it. The device plugin
binds the devices: no local slice environment (host GPU indices) ever reaches a pod. Optionally each tenant's
servers run in the tenant's own namespace — the tenant's ``namespace`` setting in the service's database,
the one the chart creates — with a ``ResourceQuota`` from the tenant's quota that enforces it a second
time, inside Kubernetes.

    c.JupyterHub.spawner_class = "spawner.kube.KubeGPUSpawner"
    c.SliceRenderer.backend = "mig"          # whole | mig | time-slice | hami
    c.KubeGPUSpawner.tenant_namespaces = True
"""
from __future__ import annotations

import copy

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Instance, Unicode, default

from job_runner.binding.kube import LABEL_PREFIX, SliceNotSupported, SliceRenderer, label_value
from job_runner.scheduling import ANY, Assignment, Quota

from .allocation import slice_request
from .form import describe_request, options_form
from .mixin import GPUSliceSpawnerMixin

QUOTA_NAME = "aistack-tenant-quota"
MIB = 1024 * 1024

# Traits a profile overrides: restored to their configured values before each start, because
# kubespawner merges dict overrides into the spawner's (long-lived) traits.
OVERRIDDEN_TRAITS = (
    "extra_resource_limits", "extra_resource_guarantees", "cpu_limit", "cpu_guarantee", "mem_limit",
    "mem_guarantee", "node_selector", "node_affinity_required", "tolerations", "extra_labels",
    "extra_annotations", "environment", "image", "namespace", "volumes", "volume_mounts",
)


def _request_of(profile):
    """The scheduling core's SliceRequest of a service profile item (dict) or a core ``Profile``."""
    return slice_request(profile.get("request") if isinstance(profile, dict) else profile.request)


def _escape_braces(value: str) -> str:
    return str(value).replace("{", "{{").replace("}", "}}")


def _field(profile, name, default=None):
    if isinstance(profile, dict):
        return profile.get(name, default)
    return getattr(profile, name, default)


class KubeGPUSpawner(GPUSliceSpawnerMixin, KubeSpawner):
    """KubeSpawner whose profiles are the tenant's GPU-slice profiles, allocated by the aistack service."""

    renderer = Instance(SliceRenderer, help="Renders slices for this cluster (configure as c.SliceRenderer).")

    @default("renderer")
    def _renderer_default(self):
        renderer = SliceRenderer(parent=self)
        if self.slice_backend:
            renderer.backend = self.slice_backend
        return renderer

    slice_backend = Unicode(
        "",
        config=True,
        help="""Shortcut for c.SliceRenderer.backend: 'whole', 'mig', 'time-slice' or 'hami'.
        Empty: SliceRenderer's own setting.""",
    )
    tenant_namespaces = Bool(
        False,
        config=True,
        help="""Run each tenant's servers in the tenant's own namespace: its ``namespace`` setting in the
        service's database (read at each start; a tenant without one is refused). Off: all servers run in
        ``KubeSpawner.namespace``.""",
    )
    create_tenant_namespaces = Bool(
        True,
        config=True,
        help="""With tenant_namespaces: create a tenant's namespace (and its ResourceQuota) on its first
        server. Off when something else creates them (the Helm chart does, and gives the hub no right to).""",
    )
    enforce_resource_quota = Bool(
        False,
        config=True,
        help="""With tenant_namespaces and create_tenant_namespaces: keep a ResourceQuota in each tenant
        namespace from the tenant's quota (its 'any' resource group, read from the service at each start),
        so the API server refuses pods over quota even if the service were bypassed.""",
    )

    @default("options_form")
    def _aistack_options_form(self):
        # The tenant/profile form of the mixin, not KubeSpawner's profile_list form.
        return options_form

    @default("profile_list")
    def _aistack_profile_list(self):
        return _profile_list_of_spawner

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._configured = {name: copy.deepcopy(getattr(self, name)) for name in OVERRIDDEN_TRAITS}

    # -- rendering -------------------------------------------------------------------------------

    async def tenant_record(self, name: str) -> dict | None:
        """The tenant as the service's database holds it now (``GET tenants/{name}``)."""
        return await self.service.tenant(name)

    def tenant_namespace(self, tenant: dict | None, name: str) -> str:
        """The namespace of a tenant's servers: with ``tenant_namespaces`` the tenant's ``namespace``
        setting (``tenant``: its record as ``GET tenants/{name}`` answers), else the configured one."""
        if not self.tenant_namespaces:
            return self._configured["namespace"]
        namespace = (tenant or {}).get("namespace")
        if not namespace:
            # Never a guessed namespace: it would differ from the one the chart created (and its quota, RBAC).
            raise web.HTTPError(409, f"tenant {name!r} has no Kubernetes namespace set: an admin sets the "
                                     f"tenant's 'namespace' (deployment config, or PATCH tenants/{name})")
        return namespace

    def kubespawner_override(self, profile, tenant: str, assignment=None, namespace: str | None = None) -> dict:
        """The ``kubespawner_override`` of one slice profile for ``tenant`` (servers in ``namespace`` when
        given: ``tenant_namespace``)."""
        request = _request_of(profile)
        kslice = self.renderer.render(request, tenant=tenant, profile=_field(profile, "slug", ""),
                                      workload="server", assignment=assignment)
        gpu_limits = {k: v for k, v in kslice.limits.items() if k not in ("cpu", "memory")}
        override = {
            "extra_resource_limits": gpu_limits,
            "node_selector": kslice.node_selector,
            "node_affinity_required": kslice.node_affinity_terms,
            "tolerations": list(self._configured["tolerations"]) + kslice.tolerations,
            "extra_labels": kslice.labels,
            # kubespawner expands {placeholders} in these: JSON braces must be escaped.
            "extra_annotations": {k: _escape_braces(v) for k, v in kslice.annotations.items()},
            "environment": {k: _escape_braces(v) for k, v in kslice.env.items()},
        }
        if request.cpu_milli:
            override["cpu_guarantee"] = request.cpu_milli / 1000
            override["cpu_limit"] = request.cpu_milli / 1000 if self.renderer.limit_cpu else None
        if request.memory_mib:
            override["mem_guarantee"] = request.memory_mib * MIB
            override["mem_limit"] = request.memory_mib * MIB
        image = _field(profile, "image")
        if image:
            override["image"] = image
        if self.tenant_namespaces and namespace:
            override["namespace"] = namespace
        return override

    def kubespawner_profiles(self, tenant: str, profiles, assignment=None, namespace: str | None = None) -> list[dict]:
        """kubespawner ``profile_list`` entries for ``tenant``'s slice profiles (service profile items or
        ``job_runner.scheduling.Profile``); profiles the slice backend cannot express are left out."""
        out = []
        for p in profiles:
            try:
                override = self.kubespawner_override(p, tenant, assignment, namespace)
            except SliceNotSupported as e:
                self.log.info("profile %s of tenant %s hidden: %s", _field(p, "slug"), tenant, e)
                continue
            request = _request_of(p)
            out.append({
                "slug": _field(p, "slug"),
                "display_name": _field(p, "display_name") or _field(p, "slug"),
                "description": _field(p, "description") or describe_request(request.to_dict()),
                "kubespawner_override": override,
            })
        return out

    async def fetch_profiles(self, tenant: str) -> list[dict]:
        """The service's profiles, without those this cluster's slice backend cannot express."""
        profiles = await super().fetch_profiles(tenant)
        return [p for p in profiles if self.renderer.supports(_request_of(p))]

    # -- the start sequence ----------------------------------------------------------------------

    async def load_user_options(self):
        """Apply the allocated profile (KubeSpawner's profile machinery) onto the configured values."""
        for name, value in self._configured.items():
            setattr(self, name, copy.deepcopy(value))
        # The tenant's settings (namespace, quota) as the database holds them now: read at each start.
        with self.start_phase("tenant"):
            self.__dict__["_aistack_tenant"] = await self.tenant_record(self.tenant) if self.tenant_namespaces else None
        with self.start_phase("profile"):
            await super().load_user_options()
        labels = {k: label_value(v) for k, v in self.aistack_labels.items() if v}
        self.extra_labels = {**self.extra_labels, **labels}
        self.dns_name = self.dns_name_template.format(namespace=self.namespace, name=self.pod_name)
        if self.tenant_namespaces and self.create_tenant_namespaces:
            with self.start_phase("namespace"):
                await self._ensure_tenant_namespace(self.__dict__["_aistack_tenant"])
        with self.start_phase("storage"):
            await self._add_tenant_storage()

    async def _add_tenant_storage(self):
        """The tenant's storage (issue 15 C): ``GET storage/volumes`` gives the volumes, mounts and env of the
        tenant's claim and its datasets' claims (nothing while ``KubeStorage.mount_claims`` is off) and the
        claims themselves, created here in the server's namespace first (409: there already) so the pod
        never waits on a missing claim. ``volumes``/``volume_mounts`` are restored before each start."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if not self.tenant or not self.aistack_api_url:
            return  # no service configured (in-process allocations in tests): no tenant storage either
        try:
            code, got = await self.service.call("GET", "storage/volumes", query={"tenant": self.tenant})
        except web.HTTPError as e:
            code, got = e.status_code, {"message": e.log_message}
        if code != 200 or not isinstance(got, dict):
            self.log.warning("tenant storage of %s not mounted: GET storage/volumes answered %s: %s",
                             self.tenant, code, (got or {}).get("message") if isinstance(got, dict) else got)
            return
        ns, timeout = self.namespace, self.k8s_api_request_timeout
        for pvc in got.get("claims") or []:
            pvc = {**pvc, "metadata": {**pvc["metadata"], "namespace": ns}}
            try:
                await self.api.create_namespaced_persistent_volume_claim(ns, pvc, _request_timeout=timeout)
            except ApiException as e:
                if e.status != 409:
                    raise web.HTTPError(503, f"tenant storage: cannot create the claim {ns}/{pvc['metadata']['name']}"
                                             f" ({e.status} {e.reason})") from e
        self.volumes = [*self.volumes, *(got.get("volumes") or [])]
        self.volume_mounts = [*self.volume_mounts, *(got.get("volumeMounts") or [])]
        self.environment = {**self.environment,
                            **{k: _escape_braces(v) for k, v in (got.get("env") or {}).items()}}

    async def _start_watching_pods(self, replace=False):
        # timed for the start line (a new namespace's pod reflector lists and watches before the pod is made)
        with self.start_phase("watch"):
            return await super()._start_watching_pods(replace=replace)

    async def _ensure_namespace(self):
        """KubeSpawner creates the server's namespace before each start (``enable_user_namespaces``). A tenant's
        namespace that something else creates (the chart: ``create_tenant_namespaces`` off, and the hub may
        not create namespaces) is there already: nothing to do."""
        if self.tenant_namespaces and not self.create_tenant_namespaces:
            return
        await super()._ensure_namespace()

    async def _ensure_tenant_namespace(self, tenant: dict | None):
        """The tenant's namespace, and its ResourceQuota when enforced (created or updated)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        ns = self.namespace
        try:
            await self.api.create_namespace(
                {"metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "aistack",
                                                     LABEL_PREFIX + "tenant": label_value(self.tenant)}}},
                _request_timeout=self.k8s_api_request_timeout)
        except ApiException as e:
            if e.status != 409:
                raise
        if not self.enforce_resource_quota:
            return
        hard = self.resource_quota_hard(tenant)
        if not hard:
            return
        body = {"metadata": {"name": QUOTA_NAME, "namespace": ns,
                             "labels": {"app.kubernetes.io/managed-by": "aistack"}},
                "spec": {"hard": hard}}
        try:
            await self.api.create_namespaced_resource_quota(ns, body, _request_timeout=self.k8s_api_request_timeout)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.api.patch_namespaced_resource_quota(QUOTA_NAME, ns, {"spec": {"hard": hard}},
                                                           _request_timeout=self.k8s_api_request_timeout)

    def resource_quota_hard(self, tenant: dict | None) -> dict:
        """``ResourceQuota.spec.hard`` from a tenant record's quota for all GPUs (the ``any`` group)."""
        q = ((tenant or {}).get("quotas") or {}).get(ANY)
        if not q:
            return {}
        return self.renderer.resource_quota_hard(Quota(**{k: q.get(k) for k in ("gpu_milli", "cpu_milli", "memory_mib")}))


async def _profile_list_of_spawner(spawner: KubeGPUSpawner) -> list[dict]:
    """KubeSpawner's ``profile_list`` callable: the allocated profile with its assignment once the
    service has allocated (the start path, in the tenant's namespace), else every profile of the user's
    tenants (a listing: no namespace)."""
    allocation = spawner.allocation or {}
    profile = allocation.get("profile")
    if profile and spawner.tenant:
        if not profile.get("slug"):
            profile = {**profile, "slug": spawner.profile_slug}
        assignment = allocation.get("assignment")
        assignment = Assignment.from_dict(assignment) if assignment else None
        namespace = spawner.tenant_namespace(spawner.__dict__.get("_aistack_tenant"), spawner.tenant)
        return spawner.kubespawner_profiles(spawner.tenant, [profile], assignment, namespace)
    out = []
    for tenant, profiles in (await spawner.profiles_by_tenant()).items():
        out += spawner.kubespawner_profiles(tenant, profiles)
    return out
