#!/usr/bin/env bash
# Start a test control plane by hand and print its KUBECONFIG; Ctrl-C stops it.
#   bash tests/k8s/start.sh [--workdir DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
cd "$root" && exec "$py" tests/k8s/controlplane.py up "$@"
