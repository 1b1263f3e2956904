#!/usr/bin/env bash
# Kubernetes test control plane (test mode only): build the pinned kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok and helm from Go modules, or reuse
# them from the cache outside the repo (~/.cache/aistack-k8s/<component>-<version>/bin).
# The first build takes long on 2 cores (see docs/kubernetes.md); later runs take a second.
set -euo pipefail
cd "$AISTACK_ROOT"
[ "$AISTACK_SETUP_MODE" = test ] || { echo "k8s: run mode, nothing to do"; exit 0; }
if ! command -v openssl >/dev/null; then
  apt-get install -y -q openssl >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q openssl >/dev/null; }
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ] && ! .venv/bin/python tests/k8s/controlplane.py check >/dev/null 2>&1; then
  echo "k8s: no Go toolchain (>= 1.25) at $GO and no cached binaries; the k8s tests will fail" >&2
  exit 1
fi
GO="$GO" bash tests/k8s/build.sh
