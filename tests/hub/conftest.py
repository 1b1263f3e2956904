"""A real AIStack Hub for the tests: ``aistack-hub up`` (JupyterHub + configurable-http-proxy + the aistack
service) on free loopback ports, with a test deployment config.

This machine has no GPU: NVML finds none, so the configured inventory of the test config (two A100-80GB,
the first MIG-enabled) stands in for real GPUs. Slices are still allocated by the real scheduler and pinned
in the real server processes' environment; nothing here needs a GPU to be meaningful except running CUDA.
"""
from __future__ import annotations

import json

import pytest

from .launcher import running_hub

TEST_CONFIG = {
    "Authenticator": {"admin_users": ["admin"]},
    "JupyterHub": {
        "named_server_limit_per_user": 5,
        "load_groups": {"team-c": {"users": ["carol"]}, "team-d": {"users": ["carol"]}},
    },
    "GPUSliceSpawnerMixin": {"idle_warning_s": 60, "idle_check_interval": 2},
    "tenants": [
        {"name": "team-a", "admins": [], "quotas": {"any": {"gpu_milli": 1000, "max_servers_per_user": 3}}},
        {"name": "team-b", "admins": ["bob"], "quotas": {"any": {"gpu_milli": 500}}},
        {"name": "team-c", "quotas": {"any": {"gpu_milli": 500}}, "idle_timeout_s": 20},
        {"name": "team-d", "quotas": {}},  # no quota: only the pool's size limits it
    ],
    "profiles": [
        {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "quarter", "display_name": "1/4 GPU",
         "request": {"kind": "share", "gpu_milli": 250, "gpu_mem_mib": 12288, "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "half", "display_name": "1/2 GPU",
         "request": {"kind": "share", "gpu_milli": 500, "gpu_mem_mib": 24576, "cpu_milli": 500, "memory_mib": 1024}},
        {"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1, "cpu_milli": 500,
                                                               "memory_mib": 1024}},
    ],
    "inventory": [
        {"name": "test-node", "cpu_milli": 16000, "memory_mib": 65536,
         "gpus": [{"model": "A100-80GB", "mig_enabled": True}, {"model": "A100-80GB"}]},
    ],
}


@pytest.fixture(scope="module")
def hub():
    with running_hub(TEST_CONFIG, "aistack-hub-test-", "hub") as h:
        yield h


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)[:3000]
