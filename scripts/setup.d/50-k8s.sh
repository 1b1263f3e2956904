#!/usr/bin/env bash
# Kubernetes for the tests (test mode only):
# - the pinned kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, etcd, kwok and
#   helm, built from Go modules or reused from the cache outside the repo
#   (~/.cache/aistack-k8s/<component>-<version>/bin; the first build takes long on 2 cores, see
#   docs/kubernetes.md; later runs take a second);
# - the real node's runtime, Debian's: containerd, runc, the CNI plugins (bridge, host-local, loopback),
#   iptables; mmdebstrap for the images;
# - the images (scripts/images.sh: pause and job), cached in ~/.cache/aistack-images by their inputs.
set -euo pipefail
cd "$AISTACK_ROOT"
[ "$AISTACK_SETUP_MODE" = test ] || { echo "k8s: run mode, nothing to do"; exit 0; }
need=()
command -v openssl >/dev/null || need+=(openssl)
for pkg in containerd runc containernetworking-plugins mmdebstrap iptables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  # Debian's containerd package would start a daemon where systemd runs: the node starts its own.
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ] && ! .venv/bin/python tests/k8s/controlplane.py check >/dev/null 2>&1; then
  echo "k8s: no Go toolchain (>= 1.25) at $GO and no cached binaries; the k8s tests will fail" >&2
  exit 1
fi
GO="$GO" bash tests/k8s/build.sh
# the tests use the pause and job images; the platform image is for scripts/cluster.sh, which builds it itself
GO="$GO" bash scripts/images.sh pause job >/dev/null
