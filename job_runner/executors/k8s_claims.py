"""The PersistentVolumeClaims a tenant's job pods mount (tenant storage, issue 15 C), created in the tenant's
namespace before its Job (KubernetesExecutor.start) -- the hook ``storage_claims(tenant, namespace)`` the
service sets (``aistack_hub.services.storage.install``, only with ``KubeStorage.mount_claims``) returns the
manifests (``job_runner.binding.storage_kube``: the tenant's claim, one read-only claim per dataset
published to it).

Idempotent: 409 (the claim exists: made by an earlier Job, the hub for a server, or an admin) is success and
an existing claim is never changed (its size and class are the provisioner's once bound). Each claim is
asked for once per executor (a set of created names), so a tenant's Jobs cost no extra API calls after its
first one. A claim that can neither be created nor read (no RBAC) fails the start with what to do: a pod
naming a missing claim would only wait Pending until ``pending_timeout_s``.
"""
from __future__ import annotations

import asyncio


async def ensure_claims(ex, tenant: str, namespace: str) -> list[str]:
    """Create the claims ``ex.storage_claims`` names for ``tenant`` in ``namespace``; returns the names it
    asked the API server for (empty when none is needed or all were made before)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    hook = getattr(ex, "storage_claims", None)
    if hook is None:
        return []
    seen = ex.__dict__.setdefault("_claims_seen", set())
    claims = [c for c in await asyncio.to_thread(hook, tenant, namespace)
              if (namespace, c["metadata"]["name"]) not in seen]
    if not claims:
        return []
    _, core = await ex._apis()
    for pvc in claims:
        name = pvc["metadata"]["name"]
        pvc = {**pvc, "metadata": {**pvc["metadata"], "namespace": namespace}}
        try:
            await core.create_namespaced_persistent_volume_claim(namespace, pvc, _request_timeout=ex.request_timeout_s)
        except ApiException as e:
            if e.status != 409:
                try:  # made by someone else (the hub, an admin) while we may only read
                    await core.read_namespaced_persistent_volume_claim(name, namespace,
                                                                      _request_timeout=ex.request_timeout_s)
                except ApiException:
                    raise RuntimeError(
                        f"tenant storage: cannot create the claim {namespace}/{name} ({e.status} {e.reason}): "
                        f"give the aistack service create/get on persistentvolumeclaims there, create the claim, "
                        f"or turn KubeStorage.mount_claims off") from e
        seen.add((namespace, name))
    return [c["metadata"]["name"] for c in claims]
