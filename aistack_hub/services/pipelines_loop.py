"""Wiring of pipelines and schedules into ``AIStackService`` (its marked blocks call ``install`` and
``run_forever``): the services on ``app.services.pipelines`` / ``.schedules``, and the leader's loop that
advances pipeline runs and fires schedules (every ``PipelineSettings.tick_interval_s``, or at once when an
API call on this replica wakes it)."""
from __future__ import annotations

import asyncio

from .pipelines import PipelineService, PipelineSettings
from .pipelines_advance import PipelineAdvancer
from .schedules import ScheduleService, ScheduleSettings
from .schedules_tick import ScheduleTicker


def install(app) -> None:
    services = app.services
    pipelines = PipelineService(services.ctx, services.jobs, PipelineSettings(parent=app))
    schedules = ScheduleService(services.ctx, services.jobs, pipelines, ScheduleSettings(parent=app))
    schedules.experiments = getattr(services, "experiments", None)  # issue 13's service, where it exists
    schedules.replica = app.controller.replica_id
    services.pipelines, services.schedules = pipelines, schedules
    app.pipeline_advancer = PipelineAdvancer(pipelines, app.log)
    schedules.ticker = ScheduleTicker(schedules, app.controller.replica_id, app.log)
    app.pipelines_wake = asyncio.Event()

    def wake():
        loop = getattr(app, "_pipelines_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(app.pipelines_wake.set)

    pipelines.wake = schedules.wake = wake


async def run_forever(app, stop: asyncio.Event) -> None:
    app._pipelines_loop = asyncio.get_running_loop()
    pipelines, schedules = app.services.pipelines, app.services.schedules
    interval = pipelines.settings.tick_interval_s
    while not stop.is_set():
        app.pipelines_wake.clear()
        leader = app.run_scheduler and app.controller.is_leader
        if leader or (app.run_scheduler and not schedules.settings.leader_only):
            try:
                await schedules.ticker.run_once()
            except Exception:  # noqa: BLE001 - the next pass tries again
                app.log.exception("schedules pass failed")
        if leader:
            try:
                await app.pipeline_advancer.run_once()
            except Exception:  # noqa: BLE001
                app.log.exception("pipelines pass failed")
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(app.pipelines_wake.wait())]
        await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
