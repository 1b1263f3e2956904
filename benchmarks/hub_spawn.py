"""Spawn-to-ready time: our LocalGPUSpawner versus JupyterHub's plain local-process spawner, same run.

    .venv/bin/python benchmarks/hub_spawn.py [--rounds 5]

Starts the same hub configuration (aistack_hub.hubconfig.configure: JupyterHub + configurable-http-proxy +
the aistack service) twice on loopback ports, once with ``spawner.local.LocalGPUSpawner`` and once with
``jupyterhub.spawner.SimpleLocalProcessSpawner`` (JupyterHub's local-process spawner without system
accounts), and times POST /hub/api/users/U/servers/S until the hub reports the server ready, ``--rounds``
times each (alternating one stop/start per round). Ours includes the GPU-slice allocation through the
aistack service (a quota check, the scheduler's placement, the release on stop).
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from aistack_hub.hubconfig import free_port  # noqa: E402

CONFIG_PY = """
import os
from aistack_hub.hubconfig import configure
configure(c, data_dir={data_dir!r}, port={port}, hub_port={hub_port}, service_port={service_port},
          proxy_api_port={proxy_api_port}, spawner_class={spawner_class!r})
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.SimpleLocalProcessSpawner.home_dir_template = {data_dir!r} + "/homes/{{username}}"
if os.geteuid() == 0:
    # The baseline runs as the hub's account; so does ours when /root hides the interpreter (see docs/hub.md).
    c.SimpleLocalProcessSpawner.args = ["--allow-root"]
"""


def start_hub(spawner_class: str, tmp: str, attempts: int = 3) -> "Hub":
    """JupyterHub gives its managed service ~10 s; on a busy machine its first start may need more."""
    for attempt in range(1, attempts + 1):
        try:
            return Hub(spawner_class, tmp, attempt)
        except HubStartError as e:
            if attempt == attempts or "Cannot connect to aistack service" not in str(e):
                raise SystemExit(str(e)) from None
            print(f"(the aistack service was slow to start; attempt {attempt + 1})", file=sys.stderr)


class HubStartError(Exception):
    pass


class Hub:
    def __init__(self, spawner_class: str, tmp: str, attempt: int = 1):
        self.token = secrets.token_hex(16)
        self.data_dir = os.path.join(tmp, spawner_class.rsplit(".", 1)[-1] + f"-{attempt}")
        os.makedirs(self.data_dir)
        self.port = free_port()
        cfg = os.path.join(self.data_dir, "jupyterhub_config.py")
        with open(cfg, "w") as f:
            f.write(CONFIG_PY.format(data_dir=self.data_dir, port=self.port, hub_port=free_port(),
                                     service_port=free_port(), proxy_api_port=free_port(),
                                     spawner_class=spawner_class, python=sys.executable))
        env = dict(os.environ, AISTACK_ADMIN_TOKEN=self.token)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.path.join(REPO, "node_modules", ".bin"),
                                       env.get("PATH", "")])
        self.log = open(os.path.join(self.data_dir, "hub.log"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", cfg], cwd=self.data_dir, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "services/aistack/api/openapi.json", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                self.log.flush()
                raise HubStartError("hub exited:\n" + open(self.log.name).read()[-3000:])
            time.sleep(0.5)
        else:
            raise HubStartError("hub did not start:\n" + open(self.log.name).read()[-3000:])

    def api(self, method, path, **kw):
        r = requests.request(method, self.url + "hub/api/" + path, timeout=120,
                             headers={"Authorization": f"token {self.token}"}, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
        return r

    def spawn_to_ready(self, user: str, server: str) -> float:
        t0 = time.perf_counter()
        self.api("POST", f"users/{user}/servers/{server}", json={"tenant": "team-a", "profile": "gpu-quarter"}
                 if "/LocalGPUSpawner" in self.data_dir else None)
        while True:
            srv = self.api("GET", f"users/{user}").json()["servers"].get(server)
            if srv and srv.get("ready"):
                return time.perf_counter() - t0
            if srv is None:
                raise SystemExit(f"{user}/{server} failed to start; see {self.log.name}")
            time.sleep(0.02)

    def stop_server(self, user: str, server: str):
        self.api("DELETE", f"users/{user}/servers/{server}", json={"remove": True})
        while server in self.api("GET", f"users/{user}").json()["servers"]:
            time.sleep(0.05)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


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
            hub = hubs[name] = start_hub(cls, tmp)
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
        hubs["LocalGPUSpawner"].log.flush()
        allocs = [float(line.split("slice allocated in ")[1].split()[0])
                  for line in open(hubs["LocalGPUSpawner"].log.name) if "slice allocated in" in line]
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
