"""The hub's parts on their own: profile form, slice binding, allocation messages, discovery, admin page
rendering (hubconfig: tests/hub/test_config.py).

No GPU here: discovery is checked for its fallback to the configured inventory (NVML reports no driver),
and the NVML name mapping with the names real drivers report.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tornado import web

from aistack_hub.admin.data import alarms, gpu_hours_svg, normalise_tenant
from job_runner.binding.discovery import discover, model_name
from spawner.allocation import over_quota_message, slice_label
from spawner.form import check_user_options, render_profile_form
from spawner.local import LocalGPUSpawner
from tests.k8s_workloads.conftest import offline_kubeconfig  # noqa: F401  (a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def profile(slug, free=1, fits=True, **req):
    return {"slug": slug, "display_name": slug.upper(), "request": req or {"kind": "cpu"}, "free": free,
            "quota_left": {"gpu_milli": 750, "cpu_milli": None, "memory_mib": None}, "fits_quota": fits}


def test_profile_form_per_tenant():
    html = render_profile_form(["team-a", "team-b"], {
        "team-a": [profile("quarter", kind="share", gpu_milli=250), profile("gpu-1", free=0, kind="whole", gpus=1)],
        "team-b": [profile("big", fits=False, kind="whole", gpus=4)],
    })
    assert html.count("<fieldset") == 2 and "several tenants" in html
    assert 'value="team-a/quarter" checked' in html
    assert "none free: you will wait in line" in html
    assert 'value="team-b/big" disabled' in html and "over your tenant's quota" in html
    assert "quota left: 0.75 GPU" in html
    # names are escaped
    assert "<script>" not in render_profile_form(["<script>"], {"<script>": [profile("x")]})


def test_profile_form_without_waiting_disables_full_profiles():
    html = render_profile_form(["t"], {"t": [profile("a", free=0), profile("b", free=2)]}, wait_for_gpu=False)
    assert 'value="t/a" disabled' in html and 'value="t/b" checked' in html


def test_user_options_are_checked():
    check_user_options(None, {"tenant": "team-a", "profile": "cpu"})
    with pytest.raises(web.HTTPError) as e:
        check_user_options(None, {"tenant": "team-a", "image": "evil"})
    assert e.value.status_code == 400
    with pytest.raises(web.HTTPError):
        check_user_options(None, {"profile": ["a"]})


@pytest.mark.parametrize("asg,expect", [
    # A share of GPU 1: the one visible device is ordinal 0 for MPS (job_runner/binding/local.py says why).
    ({"node": "n", "gpu_indices": [1], "gpu_milli": 250, "gpu_mem_mib": 12288},
     {"CUDA_VISIBLE_DEVICES": "1", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
      "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=12288M"}),
    # Thread percentage rounds down (milli // 10): never more SMs than the share.
    ({"node": "n", "gpu_indices": [3], "gpu_milli": 429}, {"CUDA_VISIBLE_DEVICES": "3",
                                                           "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "42"}),
    ({"node": "n", "gpu_indices": [0, 1], "gpu_milli": 1000}, {"CUDA_VISIBLE_DEVICES": "0,1"}),
    ({"node": "n", "gpu_indices": [], "gpu_milli": 0}, {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}),
])
def test_local_spawner_binds_with_the_one_local_binding(asg, expect):
    from job_runner.binding.local import local_env

    sp = LocalGPUSpawner(mps_pipe_directory="/tmp/mps")
    env = sp.slice_binding(asg)
    for k, v in expect.items():
        assert env[k] == v, env
    if "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" in expect:
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/mps"
    else:
        assert not any(k.startswith("CUDA_MPS") for k in env), env
    # the same environment as the local job executor's binding: one implementation
    assert env == local_env(asg, mps_pipe_directory="/tmp/mps")


def test_mig_binding_without_nvml_falls_back_to_the_gpu():
    sp = LocalGPUSpawner()
    env = sp.slice_binding({"node": "n", "gpu_indices": [0], "gpu_milli": 429, "mig": [0, "3g.40gb", 4]})
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env
    assert (env["AISTACK_MIG_PROFILE"], env["AISTACK_MIG_SLOT"]) == ("3g.40gb", "4")
    assert slice_label({"node": "n", "mig": [0, "3g.40gb", 4]}) == "n/gpu0:mig-3g.40gb@4"
    assert slice_label({"node": "n", "gpu_indices": [1], "gpu_milli": 250}) == "n/gpu1:250m"


def test_over_quota_message_charges_with_the_core():
    # MIG 3g.40gb is charged as the core's SliceRequest.charge says (3/7 of an A100), not a local formula.
    p = {"slug": "mig", "request": {"kind": "mig", "mig_profile": "3g.40gb", "gpu_mem_mib": None,
                                    "gpu_models": ["A100-80GB"], "cpu_milli": 2000, "memory_mib": 8192},
         "quota_left": {"gpu_milli": 250, "cpu_milli": None, "memory_mib": 4096}}
    text = over_quota_message("team-a", "alice", p, {"tenants": {"team-a": {"gpu_milli": 750, "servers": 3}},
                                                     "users": {"alice": {"team-a": {"servers": 1}}}})
    assert "needs 0.429 GPU but 0.25 GPU of the quota is left; 8 GiB but 4 GiB of the quota is left" in text, text
    assert "in use now: 0.75 GPU (750 milli-GPU)" in text and "3 server(s)" in text and "1 of the servers yours" in text


def test_nvml_names_map_to_models():
    assert model_name("NVIDIA H200") == "H200"
    assert model_name("NVIDIA H100 80GB HBM3") == "H100-80GB"
    assert model_name("NVIDIA A100-SXM4-80GB") == "A100-80GB"
    assert model_name("NVIDIA A100-PCIE-40GB") == "A100-40GB"
    assert model_name("Tesla T4") == "T4"
    assert model_name("NVIDIA L4") == "L4"
    assert model_name("NVIDIA L40S") == "L40S"
    assert model_name("NVIDIA GeForce RTX 4090") == "GeForce RTX 4090"


def test_discovery_falls_back_to_configured_inventory():
    configured = [{"name": "x", "cpu_milli": 1000, "memory_mib": 1024, "gpus": 2, "gpu_model": "T4"}]
    d = discover(configured)
    if d["nvml"].get("available"):
        pytest.fail("this test documents the no-GPU fallback; NVML found a driver here: run discovery by hand")
    assert d["source"] == "configured" and d["nodes"] == configured
    assert discover(None)["source"] == "none"
    out = subprocess.run([sys.executable, "-m", "job_runner.binding.discovery"], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["source"] == "none" and data["nodes"][0]["cpu_milli"] >= 1000


def test_admin_alarms_and_plot():
    inv = {"nodes": [{"name": "n1", "healthy": False, "gpus": [
        {"index": 0, "healthy": False, "workloads": []},
        {"index": 1, "utilization_pct": 3, "workloads": [{"gpu_milli": 100}]}]}]}
    texts = [a["text"] for a in alarms(inv, {}, [{"id": 1}])]
    assert "node n1 is unhealthy" in texts
    assert any("GPU 0 of n1 is gone" in t for t in texts)
    assert any("3% busy" in t for t in texts)
    assert any("while 1 job(s) wait" in t for t in texts)
    svg = gpu_hours_svg([{"day": "2026-11-25", "tenant": "a", "gpu_hours": 2.0},
                         {"day": "2026-11-25", "tenant": "b", "gpu_hours": 1.0},
                         {"day": "2026-11-26", "tenant": "a", "gpu_hours": 0.5}])
    assert svg.count("<rect") == 3 and 'data-gpu-hours="2.00"' in svg
    t = normalise_tenant({"name": "x", "quotas": {"any": {"gpu_milli": 5}}})
    assert t["quotas"]["any"]["cpu_milli"] is None and t["weight"] == 1.0


# -- the spawner's parts against the real aistack service (no hub: the spawner calls it with the hub's token)

SERVICE_DEPLOYMENT = {
    "tenants": [{"name": "team-a", "quotas": {"any": {"gpu_milli": 500}}, "idle_timeout_s": 3600,
                 "namespace": "research"}],
    "profiles": [
        {"slug": "quarter", "request": {"kind": "share", "gpu_milli": 250, "gpu_mem_mib": 4096, "cpu_milli": 500,
                                        "memory_mib": 1024}},
        {"slug": "gpu-1", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 500, "memory_mib": 1024}},
    ],
    # two GPUs the configured way (no GPU here): the slice is placed by the real scheduler
    "inventory": [{"name": "node-1", "cpu_milli": 8000, "memory_mib": 32768,
                   "gpus": [{"model": "A100-80GB"}, {"model": "A100-80GB"}]}],
}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from tests.k8s_workloads.service_proc import HUB_TOKEN, aistack_service

    with aistack_service(tmp_path_factory.mktemp("svc"), SERVICE_DEPLOYMENT) as svc:
        svc["token"] = HUB_TOKEN
        yield svc


def _spawner_for(service, user="alice", tenants=("team-a",), **traits):
    from types import SimpleNamespace

    # The hub's user object: what the spawner reads of it (name, groups); the hub itself is not needed here.
    user = SimpleNamespace(name=user, groups=[SimpleNamespace(name=t) for t in tenants], url=f"/user/{user}/",
                           settings={})
    return LocalGPUSpawner(user=user, aistack_api_url=service["api"], aistack_token=service["token"],
                           allocation_poll_interval=0.1, **traits)


def _svc(service, method, path, **kw):
    import requests

    r = requests.request(method, service["api"] + path, headers={"Authorization": f"token {service['token']}"},
                         timeout=30, **kw)
    assert r.status_code < 300, r.text
    return r.json()


async def test_allocate_binds_and_releases_through_the_service(service):
    sp = _spawner_for(service)
    sp.user_options = {"tenant": "team-a", "profile": "quarter"}
    allocation = await sp.allocate()
    assert allocation["state"] == "allocated"
    asg = allocation["assignment"]
    env = sp.slice_binding(asg)
    assert env["CUDA_VISIBLE_DEVICES"] == str(asg["gpu_indices"][0])
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=4096M" and env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert sp.mem_limit == 1024 * 1024 * 1024 and sp.cpu_limit == 0.5
    # over quota (500 milli-GPU, 250 in use): refused at once, with what the core charges and what is in use
    other = _spawner_for(service, user="bob")
    other.user_options = {"tenant": "team-a", "profile": "gpu-1"}
    with pytest.raises(web.HTTPError) as refused:
        await other.allocate()
    assert refused.value.status_code == 403
    assert "needs 1 GPU but 0.25 GPU of the quota is left" in refused.value.log_message
    assert "in use now: 0.25 GPU" in refused.value.log_message
    await sp.release()
    assert sp.allocation is None
    assert _svc(service, "GET", f"allocations/{allocation['id']}")["state"] == "released"
    await sp.release()  # idempotent


async def test_idle_time_out_is_read_live_from_the_tenant(service):
    import datetime as dt
    from types import SimpleNamespace

    from jupyterhub import orm

    sp = _spawner_for(service, idle_warning_s=300)
    sp.tenant = "team-a"
    now = dt.datetime.now(dt.timezone.utc)
    # the hub's record of the server (a real ORM row, as the hub keeps it: naive UTC): idle for 58 min
    sp.orm_spawner = orm.Spawner(name="lab", last_activity=(now - dt.timedelta(seconds=3480)).replace(tzinfo=None))
    assert await sp.check_idle(now.timestamp()) == "warned"  # 3600 s time-out from the config
    assert sp.idle_warning.startswith("Your 'lab' server has been idle for 58 min and will be stopped at")
    # an admin lifts the time-out (the admin page's PATCH): the next check reads it, no restart
    _svc(service, "PATCH", "tenants/team-a", json={"idle_timeout_s": None})
    assert await sp.check_idle(now.timestamp()) == "ok" and sp.idle_warning == ""
    _svc(service, "PATCH", "tenants/team-a", json={"idle_timeout_s": 7200})
    assert await sp.check_idle(now.timestamp()) == "ok"
    _svc(service, "PATCH", "tenants/team-a", json={"idle_timeout_s": 3600})


async def test_a_server_that_outlived_a_hub_restart_is_watched_again():
    # The idle watch lives in the hub process; a hub that restarts loads the server from its database and
    # polls it: that poll resumes the watch (else a surviving server would never be culled).
    sp = LocalGPUSpawner(idle_check_interval=3600)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        sp.load_state({"pid": server.pid, "aistack": {"allocation": {"id": 7, "state": "allocated"},
                                                      "tenant": "team-a", "profile": "quarter"}})
        assert not sp.idle_culler.watching
        assert await sp.poll() is None
        assert sp.idle_culler.watching
        sp.idle_culler.stop()
        assert not sp.idle_culler.watching
    finally:
        server.kill()
        server.wait()


async def test_kube_spawner_runs_servers_in_the_tenants_namespace(service, offline_kubeconfig):
    # Real kubespawner rendering (no cluster: the manifest only) of a slice allocated by the real service.
    from types import SimpleNamespace

    from kubernetes_asyncio.client import ApiClient
    from traitlets.config import Config

    from spawner.kube import KubeGPUSpawner

    c = Config()
    c.KubeSpawner.k8s_api_host = offline_kubeconfig
    c.SliceRenderer.backend = "time-slice"
    c.KubeGPUSpawner.tenant_namespaces = True
    c.KubeGPUSpawner.create_tenant_namespaces = False
    c.GPUSliceSpawnerMixin.aistack_api_url = service["api"]
    c.GPUSliceSpawnerMixin.aistack_token = service["token"]
    s = KubeGPUSpawner(_mock=True, config=c)
    s.user.name = "kate"
    s.user.groups = [SimpleNamespace(name="team-a")]
    s.user_options = {"tenant": "team-a", "profile": "quarter"}
    await s.allocate()
    try:
        await s.load_user_options()
        async with ApiClient() as api:
            pod = api.sanitize_for_serialization(await s.get_pod_manifest())
        # the tenant's own namespace setting (the chart's), not one derived from its name
        assert s.namespace == "research"  # where KubeSpawner creates the pod (and its PVC, service)
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert not any(k.startswith("CUDA_") for k in env), env  # the device plugin binds, never host indices
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu.shared"] == "1"
        # read at each start: an admin's edit applies to the next one; no namespace is refused, never guessed
        _svc(service, "PATCH", "tenants/team-a", json={"namespace": None})
        with pytest.raises(web.HTTPError, match="no Kubernetes namespace"):
            await s.load_user_options()
    finally:
        _svc(service, "PATCH", "tenants/team-a", json={"namespace": "research"})
        await s.release()
