#!/usr/bin/env bash
# Builds (or reuses) the binaries of the test control plane, cached outside the repo by version:
#   $AISTACK_K8S_CACHE (default ~/.cache/aistack-k8s)/
#     k8s-<K8S_VERSION>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,etcd,kubelet}
#     kwok-<KWOK_VERSION>/bin/kwok
#     helm-<HELM_VERSION>/bin/helm
# Kubernetes is built from the wrapper module tests/k8s/cmd (requires k8s.io/kubernetes and
# replaces every staging module), etcd from go.etcd.io/etcd/server/v3 at the version Kubernetes
# pins, kwok and helm with `go install`. Each binary is skipped when already cached.
# Build time and peak memory of each step go to <cache>/build-times.log (/usr/bin/time -v).
# Knobs: GO (go binary), AISTACK_K8S_GOFLAGS (default -p=2), GOMAXPROCS (default 2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC1091
source "$here/versions.env"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
cache="${AISTACK_K8S_CACHE:-$HOME/.cache/aistack-k8s}"
k8s_bin="$cache/k8s-$K8S_VERSION/bin"
kwok_bin="$cache/kwok-$KWOK_VERSION/bin"
helm_bin="$cache/helm-$HELM_VERSION/bin"
mkdir -p "$k8s_bin" "$kwok_bin" "$helm_bin"
log="$cache/build-times.log"

# The machine is shared: few parallel compiles, a modest Go scheduler.
export GOFLAGS="${AISTACK_K8S_GOFLAGS:--p=2} -trimpath"
export GOMAXPROCS="${GOMAXPROCS:-2}"
export CGO_ENABLED=0

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ver_ldflags=""
# Same variables as kubernetes' hack/lib/version.sh, so `kubectl version` and Helm see the release.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ver_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  ver_ldflags+=" -X $pkg.gitCommit=module-k8s.io/kubernetes@$K8S_VERSION"
done

timed() {  # timed NAME CMD... : run CMD under /usr/bin/time -v, append the figures to the log
  local name="$1"; shift
  local t; t="$(mktemp)"
  echo "==> building $name"
  if /usr/bin/time -v -o "$t" "$@"; then
    local wall rss
    wall="$(grep 'Elapsed (wall clock)' "$t" | awk '{print $NF}')"
    rss="$(grep 'Maximum resident set size' "$t" | awk '{print $NF}')"
    echo "$(date -u +%FT%TZ) $name wall=$wall peak_rss_kib=$rss cpu_user_s=$(grep 'User time' "$t" | awk '{print $NF}')" | tee -a "$log"
    rm -f "$t"
  else
    cat "$t" >&2; rm -f "$t"; echo "build.sh: building $name failed" >&2; return 1
  fi
}

build_k8s() {  # build_k8s NAME IMPORT_PATH
  local name="$1" pkg="$2"
  [ -x "$k8s_bin/$name" ] && { echo "cached: $k8s_bin/$name"; return 0; }
  (cd "$here/cmd" && timed "$name" "$GO" build -ldflags "-s -w $ver_ldflags" -o "$k8s_bin/$name.tmp" "$pkg")
  mv "$k8s_bin/$name.tmp" "$k8s_bin/$name"
}

go_install() {  # go_install NAME DIR MODULE_PATH@VERSION
  local name="$1" dir="$2" spec="$3"
  [ -x "$dir/$name" ] && { echo "cached: $dir/$name"; return 0; }
  GOBIN="$dir" timed "$name" "$GO" install -ldflags "-s -w" "$spec"
}

# Order: what the fixture needs first, the biggest link first (it shares most packages).
targets="${*:-kube-apiserver etcd kwok kubectl kube-controller-manager kube-scheduler kubelet helm}"
for target in $targets; do
  case "$target" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet)
      build_k8s "$target" "k8s.io/kubernetes/cmd/$target" ;;
    etcd) build_k8s etcd ./etcd ;;
    kwok) go_install kwok "$kwok_bin" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ;;
    helm)
      [ -x "$helm_bin/helm" ] && { echo "cached: $helm_bin/helm"; continue; }
      # As helm's Makefile does: its version, and the Kubernetes version it assumes when no cluster
      # is asked (helm template, lint) = the client-go it is built with (v0.X -> 1.X).
      gomod="$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
      kminor="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
      [ -n "$kminor" ] || { echo "build.sh: cannot read helm's client-go version from $gomod" >&2; exit 1; }
      hflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      hflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        hflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
      done
      GOBIN="$helm_bin" timed helm "$GO" install -ldflags "$hflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    *) echo "build.sh: unknown target $target" >&2; exit 2 ;;
  esac
done
echo "build.sh: binaries in $k8s_bin $kwok_bin $helm_bin"
