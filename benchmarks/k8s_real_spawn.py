"""Spawn-to-ready of a real server pod: KubeGPUSpawner against plain KubeSpawner, on the same real cluster.

    .venv/bin/python benchmarks/k8s_real_spawn.py [--rounds 3] [--json]

As root (the real node). Brings the one-machine cluster up with ``scripts/cluster.sh up`` (control plane,
one real node with kubelet + containerd, kwok GPU nodes, the chart with PostgreSQL; the images of
``scripts/images.sh``), or uses the one already up (``AISTACK_CLUSTER_DIR``) and leaves it so. Then, in
this one process and on the same node, the same image and the same pod resources (0.5 CPU, 1 GiB):

aistack   the chart as installed: ``spawner.kube.KubeGPUSpawner`` — the slice asked of the service
          (quota, scheduling pass, placement on the real node), the pod rendered in the tenant's namespace;
baseline  the release upgraded (``helm upgrade``) to ``JupyterHub.spawner_class: kubespawner.KubeSpawner``,
          the chart's own KubeSpawner settings (image, uid, no service-account token), the same requests,
          limits and node, in the release's namespace (``singleuser.namespacePerTenant=false``: plain KubeSpawner has no
          tenants), no allocation; upgraded back afterwards.

Each round: ``POST hub/api/users/<u>/server`` -> the hub reports the server ready (its HTTP answered
through the proxy: JupyterHub's own readiness), then the server is stopped and gone. Prints the seconds of
each round, the medians and the ratio aistack / baseline (issue 11's goal: <= 1.1), and where the time went
(medians): the hub's "took N seconds to start" (the rest is its readiness check) and KubeGPUSpawner's own
"start phases" line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.k8s_cluster.test_cluster_sh import CLUSTER, call  # noqa: E402 - the cluster test's own client


AISTACK_OPTIONS = {"tenant": "default", "profile": "small"}


def spawn_once(url: str, token: str, user: str, options: dict | None = AISTACK_OPTIONS, timeout: float = 240) -> float:
    """options: the spawn's user_options (plain KubeSpawner reads a 'profile' as a profile_list slug: none)."""
    hub = url + "hub/api"
    t0 = time.monotonic()
    status, body = call("POST", f"{hub}/users/{user}/server", token, options)
    if status not in (201, 202):
        raise RuntimeError(f"spawn refused: {status} {body}")
    while True:
        status, info = call("GET", f"{hub}/users/{user}", token)
        server = (info.get("servers") or {}).get("", {})
        if server.get("ready"):
            ready = time.monotonic() - t0
            break
        if not server and not info.get("pending") and time.monotonic() - t0 > 5:
            raise RuntimeError(f"{user}'s server stopped while starting: {info}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{user}'s server not ready in {timeout:.0f}s: {info}")
        time.sleep(0.25)
    call("DELETE", f"{hub}/users/{user}/server", token)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = call("GET", f"{hub}/users/{user}", token)[1]
        if not info.get("servers") and not info.get("pending"):
            return ready
        time.sleep(0.5)
    raise RuntimeError(f"{user}'s server did not stop in 120 s")


PHASES = re.compile(r"(\S+): start phases ((?:\w+=[\d.]+ ?)+) \(total ([\d.]+) s\)")
TOOK = re.compile(r"User (\S+) took ([\d.]+) seconds to start")


def hub_log(kubectl: list[str]) -> str:
    return subprocess.run([*kubectl, "-n", "aistack", "logs", "--tail=5000", "-l", "app.kubernetes.io/component=hub"],
                          capture_output=True, text=True).stdout


def breakdown(log: str, user: str, rounds: int) -> dict:
    """The medians over the last ``rounds`` spawns of ``user``: the hub's own "took N seconds to start"
    (spawner.start returned: the rest of spawn-to-ready is the hub's readiness check through the proxy) and,
    for KubeGPUSpawner, its "start phases" line (slice, tenant lookups, namespace, storage, pod watch, the
    rest of KubeSpawner's start: pod created and running)."""
    took = [float(s) for u, s in TOOK.findall(log) if u == user][-rounds:]
    phases = [dict((k, float(v)) for k, v in (kv.split("=") for kv in p.split()))
              for name, p, _ in PHASES.findall(log) if name.split(":")[0] == user][-rounds:]
    out = {"start_s": statistics.median(took) if took else None}
    for k in (phases[0] if phases else {}):
        out[k + "_s"] = statistics.median(p.get(k, 0.0) for p in phases)
    return out


def pods_gone(kubectl: list[str], timeout: float = 120) -> None:
    """Between rounds no server pod is left terminating (it would hold the node's CPU)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(subprocess.run([*kubectl, "get", "pods", "-A", "-l", "component=singleuser-server",
                                           "-o", "json"], capture_output=True, text=True, check=True).stdout)["items"]
        if not items:
            return
        time.sleep(0.5)
    raise RuntimeError("server pods still there after 120 s")


def helm_upgrade(helm: list[str], kubectl: list[str], values: Path, *sets: str) -> float:
    t0 = time.monotonic()
    args = [*helm, "upgrade", "aistack", str(ROOT / "helm" / "aistack-hub"), "-n", "aistack", "-f", str(values),
            "--wait", "--timeout", "150s"]
    for s in sets:  # "json:" values keep their JSON type (--set would make 0.5 a string in the ConfigMap)
        args += ["--set-json", s[5:]] if s.startswith("json:") else ["--set", s]
    r = subprocess.run(args, capture_output=True, text=True, timeout=200)
    if r.returncode != 0:
        pods = subprocess.run([*kubectl, "get", "pods", "-A", "-o", "wide"], capture_output=True, text=True).stdout
        logs = subprocess.run([*kubectl, "-n", "aistack", "logs", "--tail=60", "-l", "app.kubernetes.io/component=hub"],
                              capture_output=True, text=True).stdout
        raise RuntimeError(f"helm upgrade failed: {r.stderr[-3000:]}\n{pods}\n--- hub:\n{logs[-6000:]}")
    return time.monotonic() - t0


def wait_hub(url: str, token: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call("GET", url + "hub/api/users", token)[0] == 200 and \
                    call("GET", url + "services/aistack/api/tenants", token)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError("the hub or the service did not answer after the upgrade")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: the real node manages mounts, cgroups and network namespaces", file=sys.stderr)
        return 2
    from tests.k8s.controlplane import binary_paths

    env_dir = os.environ.get("AISTACK_CLUSTER_DIR")
    ours = False
    state = Path(env_dir) if env_dir else Path(tempfile.mkdtemp(prefix="aistack-bench-"))
    env = dict(os.environ, AISTACK_CLUSTER_DIR=str(state))
    if subprocess.run([*CLUSTER, "status"], env=env, capture_output=True).returncode != 0:
        up = subprocess.run([*CLUSTER, "up"], env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
        if up.returncode != 0:
            print(up.stderr[-4000:], file=sys.stderr)
            return 1
        ours = True
    ready = dict(line.split("=", 1) for line in (state / "run" / "ready").read_text().split() if "=" in line)
    url, token, kubeconfig = ready["AISTACK_URL"], ready["AISTACK_ADMIN_TOKEN"], ready["KUBECONFIG"]
    kubectl = [str(binary_paths()["kubectl"]), "--kubeconfig", kubeconfig]
    helm = [str(binary_paths()["helm"]), "--kubeconfig", kubeconfig]
    values = state / "run" / "values.yaml"
    out: dict = {"rounds": args.rounds}
    try:
        hub = url + "hub/api"
        for user in ("bench-a", "bench-b"):
            assert call("POST", f"{hub}/users/{user}", token)[0] in (201, 409)
        assert call("POST", f"{hub}/groups/default/users", token, {"users": ["bench-a", "bench-b"]})[0] == 200
        # a first spawn pulls nothing (images are imported) but warms the node's caches: not counted
        spawn_once(url, token, "bench-a")
        pods_gone(kubectl)
        aistack = []
        for _ in range(args.rounds):
            aistack.append(spawn_once(url, token, "bench-a"))
            pods_gone(kubectl)
        out["aistack_breakdown"] = breakdown(hub_log(kubectl), "bench-a", args.rounds)
        out["upgrade_to_baseline_s"] = helm_upgrade(
            helm, kubectl, values, "config.JupyterHub.spawner_class=kubespawner.KubeSpawner",
            # with namespaces per tenant the chart turns KubeSpawner's per-user namespaces on (KubeGPUSpawner
            # picks the tenant's); plain KubeSpawner would create one per user, which the hub may not: off,
            # its pods go to the release's namespace (the chart's RBAC follows)
            "singleuser.namespacePerTenant=false", "json:config.KubeSpawner.cpu_guarantee=0.5",
            # the same limits as the slice's pod (SliceRenderer.limit_cpu: CPU limit = request): a server's
            # start is CPU-bound (~4 CPU-s of imports), so a baseline without them would start twice as fast
            "json:config.KubeSpawner.cpu_limit=0.5", "config.KubeSpawner.mem_guarantee=1G", "config.KubeSpawner.mem_limit=1G",
            "config.KubeSpawner.node_selector.kubernetes\\.io/hostname=aistack-node-0")
        wait_hub(url, token)
        spawn_once(url, token, "bench-b", None)
        pods_gone(kubectl)
        baseline = []
        for _ in range(args.rounds):
            baseline.append(spawn_once(url, token, "bench-b", None))
            pods_gone(kubectl)
        out["baseline_breakdown"] = breakdown(hub_log(kubectl), "bench-b", args.rounds)
        out["upgrade_back_s"] = helm_upgrade(helm, kubectl, values)
        wait_hub(url, token)
        out.update(aistack_s=aistack, baseline_s=baseline, aistack_median_s=statistics.median(aistack),
                   baseline_median_s=statistics.median(baseline))
        out["ratio"] = out["aistack_median_s"] / out["baseline_median_s"]
    except Exception:
        logs = subprocess.run([*kubectl, "-n", "aistack", "logs", "--tail=80", "-l", "app.kubernetes.io/component=hub"],
                              capture_output=True, text=True).stdout
        print(f"--- the hub's log (last lines):\n{logs[-8000:]}", file=sys.stderr)
        raise
    finally:
        if ours:
            subprocess.run([*CLUSTER, "down"], env=env, capture_output=True, timeout=300)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"spawn-to-ready of a real server pod, {args.rounds} rounds each (after one warm-up):")
        print(f"  KubeGPUSpawner (aistack): {' '.join(f'{s:.1f}' for s in out['aistack_s'])} s; median {out['aistack_median_s']:.1f} s")
        print(f"  plain KubeSpawner       : {' '.join(f'{s:.1f}' for s in out['baseline_s'])} s; median {out['baseline_median_s']:.1f} s")
        print(f"  ratio aistack / baseline: {out['ratio']:.2f} (goal <= 1.1)")
        for name in ("aistack", "baseline"):
            b = out[name + "_breakdown"]
            print(f"  {name} medians: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in b.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
