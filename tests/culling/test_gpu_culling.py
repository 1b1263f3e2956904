"""GPU-aware idle culling end to end: the real aistack service (its monitor, database, API) and the real
spawner's idle watch (``spawner.idle.IdleCuller``) with a slice allocated by the real scheduler.

This machine has no GPU, so the GPU's *utilisation* is fed: the service reads it from a samples file
(``Monitor.source=file``, ``job_runner.monitoring.feed.FileSource``) that the test writes. Everything after
the numbers is the real code path: attribution to the slice, idle state and intervals in the database,
the policy, the decision, the warning, "keep", the stop, and the slice released.
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import requests

from spawner.local import LocalGPUSpawner

DEPLOYMENT = {
    "tenants": [{"name": "team-a", "quotas": {"any": {"gpu_milli": 2000}}, "admins": ["tina"]}],
    "profiles": [{"slug": "gpu-1", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 500, "memory_mib": 1024}}],
    "inventory": [{"name": "node-1", "cpu_milli": 8000, "memory_mib": 32768,
                   "gpus": [{"model": "A100-80GB"}, {"model": "A100-80GB"}]}],
}
IDLE_S, WARN_S = 8.0, 5.0


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from tests.k8s_workloads.service_proc import HUB_TOKEN, aistack_service

    tmp = tmp_path_factory.mktemp("culling")
    samples = tmp / "gpu-samples.json"
    feed(samples, {0: 0.0, 1: 0.0})
    with aistack_service(tmp, DEPLOYMENT, "--Monitor.source=file", f"--Monitor.samples_file={samples}",
                         "--Monitor.interval_s=0.3", f"--Monitor.idle_s={IDLE_S}", f"--Monitor.idle_warn_s={WARN_S}",
                         "--Monitor.idle_threshold_pct=5",
                         "--Monitor.max_keep_hours=8") as svc:
        svc["token"], svc["samples"] = HUB_TOKEN, samples
        yield svc


def feed(path, utils: dict):
    """The stand-in for the GPU: node-1's GPUs at these utilisations (written atomically)."""
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"gpus": [{"node": "node-1", "gpu": str(i), "util_pct": u, "mem_used_mib": 1000.0,
                             "mem_total_mib": 81920.0, "model": "A100-80GB"} for i, u in utils.items()]}, f)
    import os

    os.replace(tmp, path)


def api(service, method, path, expect=200, **kw):
    r = requests.request(method, service["api"] + path, headers={"Authorization": f"token {service['token']}"},
                         timeout=30, **kw)
    assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


async def poll(fn, what: str, timeout: float = 30.0):
    import asyncio

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def spawner(service):
    stopped = []

    async def stop(name):
        stopped.append(name)
        await sp.stop()

    user = SimpleNamespace(name="alice", groups=[SimpleNamespace(name="team-a")], url="/user/alice/",
                           settings={}, stop=stop)
    sp = LocalGPUSpawner(user=user, aistack_api_url=service["api"], aistack_token=service["token"],
                         allocation_poll_interval=0.1, idle_check_interval=0)
    sp.user_options = {"tenant": "team-a", "profile": "gpu-1"}
    return sp, stopped


async def test_idle_gpu_server_is_warned_kept_then_stopped_and_its_slice_comes_back(service):
    sp, stopped = spawner(service)
    alloc = await sp.allocate()
    aid, gpu = alloc["id"], alloc["assignment"]["gpu_indices"][0]
    other = 1 - gpu
    # busy at first: no idle spell, nothing to warn about
    feed(service["samples"], {gpu: 60.0, other: 0.0})

    async def active():
        d = api(service, "GET", f"monitoring/idle/{aid}")
        return d if d["reason"].startswith("GPU active") else None
    await poll(active, "the slice's GPU sampled as active")
    assert await sp.idle_culler.check() == "ok" and sp.idle_warning == ""

    # the GPU goes idle (under the tenant's 5% threshold): first "idle, not for long", then the warning
    idle_from = time.time()
    feed(service["samples"], {gpu: 0.5, other: 90.0})

    async def warned():
        return await sp.idle_culler.check() == "warned"
    await poll(warned, "the idle warning", timeout=IDLE_S + 10)
    assert "idle" in sp.idle_warning and "keep" in sp.idle_warning, sp.idle_warning
    mine = api(service, "GET", "monitoring/idle", params={"user": "alice"})
    (item,) = [i for i in mine["items"] if i["allocation_id"] == aid]
    assert item["action"] == "warn" and item["stop_at"] > time.time() and mine["max_keep_hours"] == 8

    # "keep": too long is refused with the reason (the lab shows it), a fitting one postpones the stop
    refused = api(service, "POST", f"monitoring/idle/{aid}/keep", expect=400, json={"hours": 9})
    assert "at most 8" in refused["message"]
    keep_s = 4.0
    kept = api(service, "POST", f"monitoring/idle/{aid}/keep", json={"hours": keep_s / 3600})
    assert kept["action"] == "ok" and kept["reason"].startswith("kept until")
    assert await sp.idle_culler.check() == "ok" and sp.idle_warning == ""
    assert sp.allocation and not stopped

    # still idle when the keep ends: warned again, then stopped; the slice is released
    async def culled():
        return await sp.idle_culler.check() == "stopped"
    await poll(culled, "the stop after the keep ran out", timeout=keep_s + WARN_S + 10)
    assert stopped == [""] and sp.allocation is None
    assert api(service, "GET", f"allocations/{aid}")["state"] == "released"

    # the idle-held time is recorded for accounting: one interval, ended by the stop
    async def interval():
        got = api(service, "GET", "monitoring/idle-intervals",
                  params={"since": time.time() - 3600, "until": time.time() + 1, "tenant": "team-a"})
        mine = [i for i in got["items"] if i["allocation_id"] == aid]
        # the fixture's feed reads 0% until the 60% one is written: a pass between the allocation and that
        # feed saw the fresh slice idle and opened an interval, ended by the activity before the GPU went
        # idle — that one is not this spell; nothing else may have ended "active" (the GPU stayed idle)
        ended_active = [i for i in mine if i["end_reason"] == "active"]
        assert all(i["end"] <= idle_from for i in ended_active), ended_active
        done = [i for i in mine if not i["open"] and i["end_reason"] != "active"]
        return done or None
    (iv,) = await poll(interval, "the closed idle interval")
    assert iv["end_reason"] == "stopped" and iv["gpu_milli"] == 1000
    assert IDLE_S - 1 <= iv["end"] - iv["start"] <= IDLE_S + keep_s + WARN_S + 15
    # the GPU is free again: another spawn gets it
    sp2, _ = spawner(service)
    again = await sp2.allocate()
    assert again["state"] == "allocated"
    await sp2.release()


async def test_activity_withdraws_the_warning_and_tenant_policy_applies(service):
    sp, _ = spawner(service)
    alloc = await sp.allocate()
    aid, gpu = alloc["id"], alloc["assignment"]["gpu_indices"][0]
    feed(service["samples"], {gpu: 0.0, 1 - gpu: 0.0})

    async def warned():
        return await sp.idle_culler.check() == "warned"
    await poll(warned, "the idle warning", timeout=IDLE_S + 10)
    feed(service["samples"], {gpu: 40.0, 1 - gpu: 0.0})

    async def withdrawn():
        return await sp.idle_culler.check() == "ok" and sp.idle_warning == ""
    await poll(withdrawn, "the warning withdrawn by GPU activity")
    # a tenant admin turns culling off for the tenant; a bad value keeps the old policy and says why
    bad = api(service, "PUT", "monitoring/policies/team-a", expect=400, json={"warn_s": 99999})
    assert "warn_s must be" in bad["message"]
    p = api(service, "PUT", "monitoring/policies/team-a", json={"enabled": False})
    assert p["effective"]["enabled"] is False and p["effective"]["idle_s"] == IDLE_S
    feed(service["samples"], {gpu: 0.0, 1 - gpu: 0.0})
    d = None
    deadline = time.monotonic() + IDLE_S + 3
    while time.monotonic() < deadline:  # a whole idle time passes without a warning
        d = api(service, "GET", f"monitoring/idle/{aid}")
        assert d["action"] == "ok", d
        time.sleep(0.5)
    assert d["reason"] == "GPU idle culling is off for this tenant"
    api(service, "PUT", "monitoring/policies/team-a", json={"enabled": None})
    await sp.release()
