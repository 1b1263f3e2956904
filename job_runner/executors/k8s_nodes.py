"""Which of the cluster's nodes can take new work (KubernetesExecutor.unavailable_nodes): the controller asks
every ``Controller.node_health_interval_s`` and the scheduling core places nothing on the others until they
are back (``Scheduler.set_unavailable``). Without it the core would keep assigning a dead node: job pods are
pinned to the node the core chose (``SliceRenderer.pin_to_assigned_node``), so a run lost with its node would
be retried there and wait Pending.

A node cannot take work when its ``Ready`` condition is not True (the node lifecycle controller sets
Unknown ``node-monitor-grace-period`` after its kubelet's last heartbeat), when it is cordoned
(``spec.unschedulable``: ``kubectl cordon``/``drain``), or when it carries one of the node lifecycle's taints
(not-ready, unreachable, out-of-service: an operator's "this node is dead", unschedulable). Other taints
(``nvidia.com/gpu:NoSchedule`` on GPU nodes) are the pods' tolerations' business, not ours.
Reading Nodes needs ``nodes: list`` cluster-wide (the chart's ClusterRole ``<release>-aistack-nodes``); a 403
turns the check off with one warning (the core then goes by the inventory alone, as before).
"""
from __future__ import annotations

from traitlets import Bool
from traitlets.config import Configurable

LIFECYCLE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
                    "node.kubernetes.io/out-of-service", "node.kubernetes.io/unschedulable")


def why_unavailable(node: dict) -> str | None:
    """Why a Node (its API dict) cannot take new work, or None when it can."""
    spec, status = node.get("spec") or {}, node.get("status") or {}
    if spec.get("unschedulable"):
        return "cordoned"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return f"Ready is {ready.get('status')}"
    for taint in spec.get("taints") or []:
        if taint.get("key") in LIFECYCLE_TAINTS:
            return f"tainted {taint['key']}"
    return None


class NodeAvailability(Configurable):
    """KubernetesExecutor's node check (its trait is configured as ``KubernetesExecutor.watch_nodes``)."""

    watch_nodes = Bool(True, config=True, help="""Read the cluster's Nodes every Controller.node_health_interval_s
        and give no new placement to those not Ready, cordoned or tainted by the node lifecycle (unreachable,
        not-ready, out-of-service), so a job whose node died is retried elsewhere. Needs nodes: list
        cluster-wide (the chart's rbac.nodes); without it, or off, the inventory alone decides.""")

    async def unavailable_nodes(self) -> set[str] | None:
        if not self.watch_nodes:
            return None
        from kubernetes_asyncio.client.exceptions import ApiException

        _, core = await self._apis()
        try:
            # resource_version "0": served from the API server's watch cache, not a read of etcd per ask
            nodes = await core.list_node(resource_version="0", _request_timeout=self.request_timeout_s)
        except ApiException as e:
            if e.status in (401, 403):
                self.log.warning("cannot list the cluster's Nodes (%s): a dead node is not noticed; grant nodes: "
                                 "list (the chart's rbac.nodes) or set KubernetesExecutor.watch_nodes = False", e.status)
                self.watch_nodes = False
                return None
            raise
        api = await self._client()
        return {n.metadata.name for n in nodes.items if why_unavailable(api.sanitize_for_serialization(n))}
