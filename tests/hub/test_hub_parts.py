"""The hub's parts on their own: profile form, slice pinning, discovery, hubconfig, admin page rendering.

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
from traitlets.config import Config

from aistack_hub.admin.data import alarms, gpu_hours_svg, normalise_tenant
from aistack_hub.hubconfig import SERVICE_NAME, configure, load_deployment
from job_runner.binding.discovery import discover, model_name
from spawner.local import LocalGPUSpawner
from spawner.mixin import _check_user_options, render_profile_form, slice_label

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
    _check_user_options(None, {"tenant": "team-a", "profile": "cpu"})
    with pytest.raises(web.HTTPError) as e:
        _check_user_options(None, {"tenant": "team-a", "image": "evil"})
    assert e.value.status_code == 400
    with pytest.raises(web.HTTPError):
        _check_user_options(None, {"profile": ["a"]})


@pytest.mark.parametrize("asg,expect", [
    ({"node": "n", "gpu_indices": [1], "gpu_milli": 250, "gpu_mem_mib": 12288},
     {"CUDA_VISIBLE_DEVICES": "1", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
      "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=12288M"}),
    ({"node": "n", "gpu_indices": [0, 1], "gpu_milli": 1000}, {"CUDA_VISIBLE_DEVICES": "0,1"}),
    ({"node": "n", "gpu_indices": [], "gpu_milli": 0}, {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}),
])
def test_pinning_env(asg, expect):
    sp = LocalGPUSpawner(mps_pipe_directory="/tmp/mps")
    env = sp.pinning_env(asg)
    for k, v in expect.items():
        assert env[k] == v, env
    if "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" in expect:
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/mps"
    else:
        assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env


def test_mig_pinning_without_nvml_falls_back_to_the_gpu():
    sp = LocalGPUSpawner()
    env = sp.pinning_env({"node": "n", "gpu_indices": [0], "gpu_milli": 429, "mig": [0, "3g.40gb", 4]})
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env
    assert slice_label({"node": "n", "mig": [0, "3g.40gb", 4]}) == "n/gpu0:mig-3g.40gb@4"
    assert slice_label({"node": "n", "gpu_indices": [1], "gpu_milli": 250}) == "n/gpu1:250m"


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


def test_hubconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("AISTACK_ADMIN_TOKEN", "adm1n-token")
    c = Config()
    facts = configure(c, data_dir=str(tmp_path / "d"), port=18123, hub_port=18124, service_port=18125)
    assert facts["url"] == "http://127.0.0.1:18123/" and facts["inventory_source"] == "configured"
    assert c.JupyterHub.authenticator_class == "nativeauthenticator.NativeAuthenticator"
    assert c.NativeAuthenticator.open_signup is False
    assert set(c.JupyterHub.load_groups) == {"team-a", "team-b"}
    svc = {s["name"]: s for s in c.JupyterHub.services}
    assert svc[SERVICE_NAME]["command"][-1] == "aistack_hub.service"
    assert svc["aistack-automation"]["api_token"] == "adm1n-token"
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["admin"]["services"] == ["aistack-automation"]
    assert f"access:services!service={SERVICE_NAME}" in roles["user"]["scopes"]
    assert c.GPUSliceSpawnerMixin.aistack_token == svc[SERVICE_NAME]["api_token"]
    assert c.GPUSliceSpawnerMixin.tenant_idle_timeouts == {"team-a": 3600, "team-b": 1800}
    # the service gets the config without the hub section, with the (configured) inventory
    import yaml

    with open(tmp_path / "d" / "aistack-service.yaml") as f:
        svc_cfg = yaml.safe_load(f)
    assert "hub" not in svc_cfg and svc_cfg["inventory"][0]["name"] == "example-node"
    # the service token is stable across restarts
    again = configure(Config(), data_dir=str(tmp_path / "d"))
    assert again["service_token"] == facts["service_token"]


def test_hubconfig_rejects_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hub: {admin_user: [x]}\n")
    with pytest.raises(ValueError, match="unknown keys in hub"):
        load_deployment(str(bad))
    bad.write_text("hub: {members: {nope: [x]}}\ntenants: [{name: a}]\n")
    with pytest.raises(ValueError, match="not a tenant"):
        configure(Config(), config_path=str(bad), data_dir=str(tmp_path / "d"))


def test_up_refuses_a_bad_config_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hub: {colour: blue}\n")
    out = subprocess.run([sys.executable, "-m", "aistack_hub.app", "up", "--config", str(bad), "--data-dir",
                          str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown keys in hub" in out.stderr


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
