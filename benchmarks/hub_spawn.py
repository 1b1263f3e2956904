"""Spawn-to-ready time: our LocalGPUSpawner versus JupyterHub's plain local-process spawner, same run.

    .venv/bin/python benchmarks/hub_spawn.py [--rounds 5]

Starts the same hub configuration (the packaged example config with ``aistack-hub up``, through
tests/hub/launcher.py: JupyterHub + configurable-http-proxy + the aistack service) twice on loopback ports, once with ``spawner.local.LocalGPUSpawner`` and once with
``jupyterhub.spawner.SimpleLocalProcessSpawner`` (JupyterHub's local-process spawner without system
accounts), and times POST /hub/api/users/U/servers/S until the hub reports the server ready, ``--rounds``
times each (alternating one stop/start per round). Ours includes the GPU-slice allocation through the
aistack service (a quota check, the scheduler's placement, the release on stop).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from aistack_hub.hubconfig import DEFAULT_CONFIG  # noqa: E402
from tests.hub.launcher import start_hub, stop_hub  # noqa: E402


class Hub:
    """One hub (the packaged example config) with ``spawner_class``, started by the tests' launcher."""

    def __init__(self, spawner_class: str, tmp: str):
        self.name = spawner_class.rsplit(".", 1)[-1]
        work = os.path.join(tmp, self.name)
        os.makedirs(work)
        with open(DEFAULT_CONFIG) as f:
            config = yaml.safe_load(f)
        config["JupyterHub"] = {**config.get("JupyterHub", {}), "spawner_class": spawner_class}
        config["Spawner"] = {"cmd": [sys.executable, "-m", "jupyterhub.singleuser"]}
        home = os.path.join(work, "data", "homes", "{username}")
        # The baseline runs as the hub's account; so does ours when /root hides the interpreter (docs/hub.md).
        config["SimpleLocalProcessSpawner"] = {"home_dir_template": home,
                                               "args": ["--allow-root"] if os.geteuid() == 0 else []}
        self.hub = start_hub(config, work)
        self.log_path = self.hub.log_path

    def api(self, method, path, **kw):
        r = self.hub.api(method, path, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
        return r

    def spawn_to_ready(self, user: str, server: str) -> float:
        t0 = time.perf_counter()
        self.api("POST", f"users/{user}/servers/{server}", json={"tenant": "team-a", "profile": "gpu-quarter"}
                 if self.name == "LocalGPUSpawner" else None)
        while True:
            srv = self.api("GET", f"users/{user}").json()["servers"].get(server)
            if srv and srv.get("ready"):
                return time.perf_counter() - t0
            if srv is None:
                raise SystemExit(f"{user}/{server} failed to start; see {self.log_path}")
            time.sleep(0.02)

    def stop_server(self, user: str, server: str):
        self.api("DELETE", f"users/{user}/servers/{server}", json={"remove": True})
        while server in self.api("GET", f"users/{user}").json()["servers"]:
            time.sleep(0.05)

    def close(self):
        stop_hub(self.hub)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="aistack-bench-")
    os.chmod(tmp, 0o711)
    hubs = {}
    try:
        for name, cls in (("LocalGPUSpawner", "spawner.local.LocalGPUSpawner"),
                          ("SimpleLocalProcessSpawner", "jupyterhub.spawner.SimpleLocalProcessSpawner")):
            hub = hubs[name] = Hub(cls, tmp)
            hub.api("POST", "users/bench")
            hub.api("POST", "groups/team-a/users", json={"users": ["bench"]})
            hub.spawn_to_ready("bench", "warmup")  # first spawn pays imports into the page cache
            hub.stop_server("bench", "warmup")
        times = {name: [] for name in hubs}
        for i in range(args.rounds):
            for name, hub in hubs.items():
                times[name].append(hub.spawn_to_ready("bench", f"r{i}"))
                hub.stop_server("bench", f"r{i}")
        ours, base = statistics.median(times["LocalGPUSpawner"]), statistics.median(times["SimpleLocalProcessSpawner"])
        for name, ts in times.items():
            print(f"{name:27s} spawn-to-ready median {statistics.median(ts):.3f} s  "
                  f"(min {min(ts):.3f}, max {max(ts):.3f}, n={len(ts)})")
        print(f"ratio LocalGPUSpawner / SimpleLocalProcessSpawner = {ours / base:.3f} (goal <= 1.1)")
        mins = min(times["LocalGPUSpawner"]) / min(times["SimpleLocalProcessSpawner"])
        print(f"ratio of the fastest spawns = {mins:.3f}")
        allocs = [float(line.split("slice allocated in ")[1].split()[0])
                  for line in open(hubs["LocalGPUSpawner"].log_path) if "slice allocated in" in line]
        if allocs:
            print(f"of which the slice allocation (GET profiles + POST allocations): median "
                  f"{1000 * statistics.median(allocs):.0f} ms (n={len(allocs)})")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        for hub in hubs.values():
            hub.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
