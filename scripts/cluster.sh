#!/usr/bin/env bash
# A one-machine Kubernetes with AIStack Hub installed, to try the scale-out deployment (what kind or k3d
# would give), built from this repository's parts:
#   bash scripts/cluster.sh up       build/reuse the images, start PostgreSQL, the control plane with kwok's
#                                    GPU nodes (whole, MIG, time-slice, HAMi) and one real node (kubelet +
#                                    containerd), import the images, install helm/aistack-hub; prints as its
#                                    last lines KUBECONFIG=..., AISTACK_URL=<hub URL>, AISTACK_ADMIN_TOKEN=<admin token>
#   bash scripts/cluster.sh down     stop it all; the host as it was (processes, mounts, bridge, iptables, sysctls)
#   bash scripts/cluster.sh status   running or not; nodes and pods
# As root (the node manages mounts, cgroups and network namespaces). The work is done by one background
# process (tests/k8s_cluster/cluster.py: it holds the control plane and node, which stop with it); its
# state is in $AISTACK_CLUSTER_DIR (default ~/.cache/aistack-cluster), its log in <that>/cluster.log.
# Needs what tests/k8s_node needs (scripts/setup.d/50-k8s.sh, bash tests/k8s/build.sh kubelet) and
# PostgreSQL (scripts/setup.d/30-postgres.sh). First run: ~6 min for the images; then ~1-2 min.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
dir="${AISTACK_CLUSTER_DIR:-$HOME/.cache/aistack-cluster}"
state="$dir/run" pidfile="$dir/pid" log="$dir/cluster.log"
timeout_s="${AISTACK_CLUSTER_TIMEOUT:-1500}"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

stop() {  # SIGTERM the cluster process and wait for its cleanup (bounded)
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 240; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "cluster.sh: the cluster process $pid did not stop in 120 s; killing it (the host may not be restored: see $log)" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up)
    [ "$(id -u)" = 0 ] || { echo "cluster.sh: needs root (the real node manages mounts, cgroups, network namespaces)" >&2; exit 1; }
    if running; then
      echo "cluster.sh: already up (pid $(cat "$pidfile"))" >&2
      cat "$state/ready" 2>/dev/null || { echo "cluster.sh: still starting; see $log" >&2; exit 1; }
      exit 0
    fi
    mkdir -p "$dir"; rm -f "$dir/last-failure"
    # Its own session: the terminal's Ctrl-C or the caller's exit does not stop it; `down` does.
    setsid "$py" -m tests.k8s_cluster.cluster serve --state "$state" > "$log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" > "$pidfile"
    echo "cluster.sh: starting (pid $pid, log $log)" >&2
    shown=0 start=$SECONDS
    while [ ! -f "$state/ready" ]; do
      lines="$(grep -c '^cluster: ' "$log" 2>/dev/null || true)"
      if [ "${lines:-0}" -gt "$shown" ]; then grep '^cluster: ' "$log" | tail -n +$((shown + 1)) >&2; shown="$lines"; fi
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        echo "cluster.sh: up failed: $(cat "$dir/last-failure" 2>/dev/null | head -c 6000)" >&2
        echo "cluster.sh: last lines of $log:" >&2; tail -n 30 "$log" >&2
        exit 1
      fi
      if [ $((SECONDS - start)) -gt "$timeout_s" ]; then
        echo "cluster.sh: not up after $timeout_s s (AISTACK_CLUSTER_TIMEOUT); stopping it; see $log" >&2
        stop; exit 1
      fi
      sleep 1
    done
    grep '^cluster: ' "$log" | tail -n +$((shown + 1)) >&2 || true
    cat "$state/ready"
    ;;
  down)
    if ! running; then
      rm -f "$pidfile"
      echo "cluster.sh: not running" >&2
      exit 0
    fi
    stop
    tail -n 3 "$log" >&2
    if grep -q 'NOT RESTORED' "$log"; then exit 2; fi
    ;;
  status)
    if ! running; then echo "cluster.sh: not running"; exit 3; fi
    if [ ! -f "$state/ready" ]; then echo "cluster.sh: starting (pid $(cat "$pidfile")); see $log"; exit 0; fi
    echo "cluster.sh: up (pid $(cat "$pidfile"))"
    cat "$state/ready"
    kubeconfig="$(sed -n 's/^KUBECONFIG=//p' "$state/ready")"
    kubectl="$("$py" -c 'from tests.k8s.controlplane import binary_paths; print(binary_paths()["kubectl"])')"
    "$kubectl" --kubeconfig "$kubeconfig" get nodes
    "$kubectl" --kubeconfig "$kubeconfig" get pods -A -o wide
    ;;
  *)
    echo "usage: bash scripts/cluster.sh up|down|status" >&2
    exit 2
    ;;
esac
