"""Wiring of GPU monitoring into ``AIStackService`` (its marked blocks call these three functions)."""
from __future__ import annotations

import asyncio

from job_runner.monitoring.monitor import Monitor

from aistack_hub.services.monitoring import MonitoringService


def install(app) -> None:
    """``app.monitor`` (its traits from the service's config: ``Monitor.*``) and ``app.monitoring``."""
    from aistack_hub.metrics import publish_gpu_samples

    monitor = Monitor(app.db, publish=publish_gpu_samples, parent=app)
    if not monitor.node_name:
        inv = getattr(app.deployment, "inventory", None)
        nodes = getattr(inv, "nodes", None) or []
        monitor.node_name = nodes[0].name if nodes else ""
    if app.data_dir not in monitor.disk_paths:
        monitor.disk_paths = [*monitor.disk_paths, app.data_dir]
    app.monitor = monitor
    app.monitoring = MonitoringService(app.services.ctx, monitor)


def routes(app, prefix: str) -> list:
    from aistack_hub.api.monitoring import monitoring_handlers

    return monitoring_handlers(prefix + "api/", app.api_settings, app.monitoring)


async def run_forever(app, stop: asyncio.Event) -> None:
    """A sampling pass every ``Monitor.interval_s`` on the leader (in the I/O threads)."""
    monitor = app.monitor
    if monitor.interval_s <= 0:
        return
    while not stop.is_set():
        if app.controller.is_leader:
            try:
                await app.offload.io(monitor.sample_once)
            except Exception:  # noqa: BLE001 - the next pass tries again
                app.log.exception("GPU sampling pass failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=monitor.interval_s)
        except asyncio.TimeoutError:
            pass
