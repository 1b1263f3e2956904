#!/usr/bin/env bash
# Build AIStack's container images from this checkout, with no registry and no container daemon:
#   bash scripts/images.sh [--import CONTAINERD_SOCKET] [pause] [job] [platform]   (default: all images)
#
#   pause  the pods' sandbox image: a static Go binary (images/pause), one layer
#   job    the job / single-user image, three layers: the Debian base (mmdebstrap, images/versions.env);
#          the Python environment (/opt/aistack: papermill, ipykernel, JupyterLab, JupyterHub... every
#          dependency of our wheel, pinned by images/job/constraints.txt; user jovyan 1000:100); our
#          wheel, built from this checkout. A code change rebuilds only the last layer (seconds).
#   platform  the hub, proxy and service image: the job image's three layers plus Debian's nodejs
#          (images/delta.py) and configurable-http-proxy (CHP_VERSION, from the host's npm install).
#
# The wheels are downloaded on the host (pip wheel) and installed offline in a chroot (which has no
# network of its own) on an overlayfs over the layers below, whose upper folder becomes the next layer.
# Archives (OCI image layout + Docker's manifest.json: ctr import, docker load, skopeo copy
# oci-archive:...) are cached in $AISTACK_IMAGES_CACHE (default ~/.cache/aistack-images) under a hash
# of their inputs: an unchanged checkout rebuilds nothing. Build times go to <cache>/build-times.log.
# Last lines on stdout: AISTACK_<NAME>_IMAGE=<reference> and AISTACK_<NAME>_ARCHIVE=<path> per image.
# --import loads each archive into that containerd (namespace k8s.io, the one the kubelet uses).
# Needs root (mmdebstrap --mode=root, overlay mounts, chroot), go, mmdebstrap (scripts/setup.d/50-k8s.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck disable=SC1091
source images/versions.env
# shellcheck disable=SC1091
source images/platform.env
export SOURCE_DATE_EPOCH
py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cache="${AISTACK_IMAGES_CACHE:-$HOME/.cache/aistack-images}"
mkdir -p "$cache"
log="$cache/build-times.log"

import_to=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --import) import_to="$2"; shift 2 ;;
    pause|job|platform) targets+=("$1"); shift ;;
    *) echo "images.sh: unknown argument $1 (images: pause job platform)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(pause job platform)
[ "$(id -u)" = 0 ] || { echo "images.sh: needs root (mmdebstrap --mode=root, overlay mounts, chroot)" >&2; exit 1; }

# One build at a time per cache (two test sessions may start together).
exec 9>"$cache/.lock"
flock 9

say() { echo "images.sh: $*" >&2; }
hash_files() { local f; for f in "$@"; do sha256sum < "$f"; done | sha256sum | cut -c1-16; }  # contents, in order
timed() {  # timed NAME CMD...: run CMD, append its wall time to the log
  local name="$1"; shift
  local start=$SECONDS
  "$@"
  echo "$(date -u +%FT%TZ) $name wall_s=$((SECONDS - start))" | tee -a "$log" >&2
}

mounts=()
cleanup_mounts() {  # unmount what we mounted, innermost first
  local i
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  mounts=()
}
trap cleanup_mounts EXIT

results=()
prune() {  # prune PREFIX KEEP: remove superseded builds (an environment is ~1 GB, an archive ~600 MB)
  local p
  for p in "$cache/$1"*; do [ "$p" = "$2" ] || rm -rf "$p"; done
}

build_pause() {
  local h; h="$(hash_files images/pause/main.go images/pause/go.mod images/pack.py images/versions.env)"
  local ref="$IMAGE_PREFIX/pause:$h" out="$cache/pause-$h.tar"
  if [ ! -s "$out" ]; then
    local tmp; tmp="$(mktemp -d)"
    mkdir -p "$tmp/layer"
    (cd images/pause && CGO_ENABLED=0 GOFLAGS=-trimpath "$GO" build -ldflags "-s -w" -o "$tmp/layer/pause" .)
    timed pause "$py" images/pack.py --out "$out" --name "$ref" --layer "$tmp/layer" \
      --entrypoint '["/pause"]' --user 65535:65535 >&2
    rm -rf "$tmp"
  else
    say "cached: $out"
  fi
  results+=("AISTACK_PAUSE_IMAGE=$ref" "AISTACK_PAUSE_ARCHIVE=$out")
}

base_dir=""
build_base() {  # the Debian layer every image starts from: $base_dir/{rootfs/,layer.tar,packages.txt}
  local h; h="$(hash_files images/versions.env images/pack.py)-$(mmdebstrap --version | tr -dc '0-9.')"
  base_dir="$cache/base-$h"
  [ -f "$base_dir/done" ] && { say "cached: $base_dir"; return 0; }
  rm -rf "$base_dir"; mkdir -p "$base_dir"
  # essential: dpkg and the Essential: yes packages, no apt in the image; apt's lists and caches are
  # removed by mmdebstrap itself. SOURCE_DATE_EPOCH makes it reproducible.
  timed base mmdebstrap --mode=root --variant=essential --include="$BASE_PACKAGES" \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package}=\${Version}\n" > "$1/../packages.txt"' \
    "$DEBIAN_SUITE" "$base_dir/rootfs" "$DEBIAN_MIRROR" >&2
  timed base-layer "$py" images/pack.py --layer-only --layer "$base_dir/rootfs" --out "$base_dir/layer.tar"
  touch "$base_dir/done"
  prune base- "$base_dir"
}

overlay() {  # overlay MERGED UPPER WORK LOWER...: mount an overlay with /proc and /dev for a chroot
  local merged="$1" upper="$2" work="$3"; shift 3
  local lower; lower="$(IFS=:; echo "$*")"
  mkdir -p "$merged" "$upper" "$work"
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"; mounts+=("$merged")
  mount -t proc proc "$merged/proc"; mounts+=("$merged/proc")
  mount --rbind /dev "$merged/dev"; mounts+=("$merged/dev")
}

# The Python environment layer (/opt/aistack: every dependency of our wheel, pinned, and user jovyan),
# keyed by the wheel's declared dependencies: changing our code does not rebuild it.
env_dir=""
build_env() {  # build_env WHEEL -> $env_dir/{upper/,layer.tar}
  local whl="$1" tmp; tmp="$(mktemp -d)"
  "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
    [sys.stdout.write(l + "\n") for n in z.namelist() if n.endswith(".dist-info/METADATA") \
     for l in z.read(n).decode().splitlines() if l.startswith(("Requires-Dist", "Requires-Python"))]' "$whl" > "$tmp/deps.txt"
  # With the extras the hub and the service need in a cluster (kubespawner, kubernetes_asyncio, psycopg2).
  local extras="kubernetes,postgres"
  local h; h="$(echo "$base_dir $extras $(hash_files "$tmp/deps.txt" images/job/constraints.txt images/pack.py)" | sha256sum | cut -c1-16)"
  env_dir="$cache/env-$h"
  if [ -f "$env_dir/done" ]; then say "cached: $env_dir"; rm -rf "$tmp"; return 0; fi
  rm -rf "$env_dir"; mkdir -p "$env_dir"
  # Every dependency as a wheel, on the host (the chroot has no network).
  mkdir -p "$tmp/wheels"
  timed job-wheels "$py" -m pip wheel -q -w "$tmp/wheels" -c images/job/constraints.txt "$whl[$extras]" >&2
  cp images/job/constraints.txt "$tmp/wheels/constraints.txt"
  local merged="$tmp/merged"
  overlay "$merged" "$env_dir/upper" "$tmp/work" "$base_dir/rootfs"
  mkdir -p "$merged/tmp/wheels"
  mount --bind "$tmp/wheels" "$merged/tmp/wheels"; mounts+=("$merged/tmp/wheels")
  install_env() {
    chroot "$merged" /usr/bin/python3 -m venv /opt/aistack
    # Ours with its dependencies, then ours out again: it is the next layer.
    chroot "$merged" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root /opt/aistack/bin/pip install -q \
      --no-index --find-links /tmp/wheels -c /tmp/wheels/constraints.txt --no-cache-dir \
      --disable-pip-version-check "/tmp/wheels/$(basename "$whl")[$extras]"
    chroot "$merged" /opt/aistack/bin/pip uninstall -q -y --disable-pip-version-check aistack-hub
    # The user of every pod (runAsUser 1000, runAsGroup 100: `users` of Debian's base-files).
    echo 'jovyan:x:1000:100:AIStack user:/home/jovyan:/bin/bash' >> "$merged/etc/passwd"
    mkdir -p "$merged/home/jovyan" && chown 1000:100 "$merged/home/jovyan"
    cp "$base_dir/packages.txt" "$merged/opt/aistack/debian-packages.txt"
    chroot "$merged" /opt/aistack/bin/pip freeze --disable-pip-version-check > "$merged/opt/aistack/python-packages.txt"
  }
  timed job-env install_env
  cleanup_mounts
  rm -rf "$env_dir/upper/tmp/wheels"
  timed job-env-layer "$py" images/pack.py --layer-only --layer "$env_dir/upper" --out "$env_dir/layer.tar"
  touch "$env_dir/done"
  prune env- "$env_dir"
  rm -rf "$tmp"
}

app_dir="" app_ref_tag=""
build_app() {  # our wheel's layer over the environment -> $app_dir/layer.tar; $app_ref_tag = VERSION-HASH
  [ -n "$app_dir" ] && return 0  # built already in this run (job and platform share it)
  build_base
  local tmp; tmp="$(mktemp -d)"
  # Our wheel, from this checkout; its RECORD (a hash of every file in it) keys the layer.
  "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/ours" . >&2 2>"$tmp/wheel.log" \
    || { cat "$tmp/wheel.log" >&2; exit 1; }
  local whl; whl="$(ls "$tmp"/ours/*.whl)"
  build_env "$whl"
  "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
    [sys.stdout.write(z.read(n).decode()) for n in z.namelist() if n.endswith(".dist-info/RECORD")]' "$whl" \
    | grep -v '/RECORD,' > "$tmp/record.txt"
  local h; h="$(echo "$env_dir $(hash_files "$tmp/record.txt" images/pack.py scripts/images.sh)" | sha256sum | cut -c1-16)"
  local version; version="$(basename "$whl" | cut -d- -f2)"
  app_ref_tag="$version-$h" app_dir="$cache/app-$h"
  if [ -f "$app_dir/done" ]; then
    say "cached: $app_dir"
  else
    rm -rf "$app_dir"; mkdir -p "$app_dir"
    local merged="$tmp/merged"
    overlay "$merged" "$tmp/upper" "$tmp/work" "$env_dir/upper" "$base_dir/rootfs"
    mkdir -p "$merged/tmp/ours"
    mount --bind "$tmp/ours" "$merged/tmp/ours"; mounts+=("$merged/tmp/ours")
    timed job-app chroot "$merged" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root /opt/aistack/bin/pip install -q \
      --no-index --no-deps --no-cache-dir --disable-pip-version-check "/tmp/ours/$(basename "$whl")" >&2
    cleanup_mounts
    rm -rf "$tmp/upper/tmp/ours"
    "$py" images/pack.py --layer-only --layer "$tmp/upper" --out "$app_dir/layer.tar"
    touch "$app_dir/done"
    prune app- "$app_dir"
  fi
  rm -rf "$tmp"
}

IMAGE_ENV=(--env PATH=/opt/aistack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
           --env HOME=/home/jovyan --env PYTHONUNBUFFERED=1)

build_job() {
  build_app
  local h="${app_ref_tag##*-}"
  local ref="$IMAGE_PREFIX/aistack-job:$app_ref_tag" out="$cache/job-$h.tar"
  if [ -s "$out" ]; then
    say "cached: $out"
  else
    prune job- ""
    timed job-pack "$py" images/pack.py --out "$out" --name "$ref" \
      --layer "$base_dir/layer.tar" --layer "$env_dir/layer.tar" --layer "$app_dir/layer.tar" \
      --user 1000:100 --workdir /home/jovyan "${IMAGE_ENV[@]}" \
      --entrypoint '["/usr/bin/tini", "--"]' --cmd '["jupyterhub-singleuser"]' \
      --label "org.opencontainers.image.title=aistack-job" --label "org.opencontainers.image.version=${app_ref_tag%%-*}" >&2
  fi
  results+=("AISTACK_JOB_IMAGE=$ref" "AISTACK_JOB_ARCHIVE=$out")
}

# Node.js (Debian's, PLATFORM_PACKAGES) as one layer: mmdebstrap of the base packages plus these, minus
# the base rootfs (images/delta.py). Keyed by the base and images/platform.env, so built once.
node_dir=""
build_node() {
  build_base
  local h; h="$(echo "$base_dir $(hash_files images/platform.env images/delta.py images/pack.py)" | sha256sum | cut -c1-16)"
  node_dir="$cache/node-$h"
  [ -f "$node_dir/done" ] && { say "cached: $node_dir"; return 0; }
  rm -rf "$node_dir"; mkdir -p "$node_dir"
  timed node-rootfs mmdebstrap --mode=root --variant=essential --include="$BASE_PACKAGES,$PLATFORM_PACKAGES" \
    "$DEBIAN_SUITE" "$node_dir/rootfs" "$DEBIAN_MIRROR" >&2
  timed node-delta "$py" images/delta.py "$base_dir/rootfs" "$node_dir/rootfs" "$node_dir/upper"
  mkdir -p "$node_dir/upper/opt"
  chroot "$node_dir/rootfs" dpkg-query -W -f='${Package}=${Version}\n' > "$node_dir/upper/opt/platform-debian-packages.txt"
  rm -rf "$node_dir/rootfs"
  "$py" images/pack.py --layer-only --layer "$node_dir/upper" --out "$node_dir/layer.tar"
  touch "$node_dir/done"
  prune node- "$node_dir"
}

# configurable-http-proxy from the host's npm install (pure JavaScript: no native module), pinned by
# CHP_VERSION; /usr/local/bin/configurable-http-proxy links to it.
chp_dir=""
build_chp() {
  local src; src="$(npm root -g 2>/dev/null)/configurable-http-proxy"
  [ -f "$src/package.json" ] || src="$root/node_modules/configurable-http-proxy"
  [ -f "$src/package.json" ] || { echo "images.sh: configurable-http-proxy is not installed on this host:" \
    "npm install -g configurable-http-proxy@$CHP_VERSION (scripts/setup.d/20-node.sh)" >&2; exit 1; }
  local have; have="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$src/package.json")"
  [ "$have" = "$CHP_VERSION" ] || { echo "images.sh: the host has configurable-http-proxy $have, images/platform.env" \
    "pins $CHP_VERSION: npm install -g configurable-http-proxy@$CHP_VERSION" >&2; exit 1; }
  if find "$src" -name '*.node' | grep -q .; then
    echo "images.sh: $src has native modules (built for the host's node): not copied" >&2; exit 1
  fi
  local h; h="$( (cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum < "$root/images/pack.py") | sha256sum | cut -c1-16)"
  chp_dir="$cache/chp-$h"
  [ -f "$chp_dir/done" ] && { say "cached: $chp_dir"; return 0; }
  rm -rf "$chp_dir"; mkdir -p "$chp_dir/upper/usr/local/lib/node_modules" "$chp_dir/upper/usr/local/bin"
  cp -a "$src" "$chp_dir/upper/usr/local/lib/node_modules/configurable-http-proxy"
  chown -R 0:0 "$chp_dir/upper"
  ln -s ../lib/node_modules/configurable-http-proxy/bin/configurable-http-proxy \
    "$chp_dir/upper/usr/local/bin/configurable-http-proxy"
  "$py" images/pack.py --layer-only --layer "$chp_dir/upper" --out "$chp_dir/layer.tar"
  touch "$chp_dir/done"
  prune chp- "$chp_dir"
}

# The PostgreSQL driver of the hub and the service (psycopg2-binary, pinned by images/job/constraints.txt;
# not a dependency of our wheel, so not in the environment layer): installed with the host's pip into
# the image's site-packages (same Python 3.11 as Debian bookworm's; a manylinux wheel, libpq bundled).
pg_dir=""
build_pg() {
  local pin; pin="$(grep -i '^psycopg2-binary==' images/job/constraints.txt)"
  local h; h="$(echo "$pin $("$py" -c 'import sys; print(sys.version_info[:2])')" | sha256sum | cut -c1-16)"
  pg_dir="$cache/pg-$h"
  [ -f "$pg_dir/done" ] && { say "cached: $pg_dir"; return 0; }
  rm -rf "$pg_dir"; mkdir -p "$pg_dir"
  timed pg-driver "$py" -m pip install -q --no-deps --no-compile --disable-pip-version-check \
    --target "$pg_dir/upper/opt/aistack/lib/python3.11/site-packages" "$pin" >&2
  chown -R 0:0 "$pg_dir/upper"
  "$py" images/pack.py --layer-only --layer "$pg_dir/upper" --out "$pg_dir/layer.tar"
  touch "$pg_dir/done"
  prune pg- "$pg_dir"
}

# The platform image: the hub, the proxy and the aistack service (the chart runs all three from it with
# different commands). The job image's three layers (which already hold JupyterHub, kubespawner and our
# package) plus Node.js and configurable-http-proxy: one image instead of three, since they would share
# every layer but the last two anyway.
build_platform() {
  build_app
  build_node
  build_chp
  build_pg
  local h; h="$(echo "$app_dir $node_dir $chp_dir $pg_dir" | sha256sum | cut -c1-16)"
  local ref="$IMAGE_PREFIX/aistack-platform:${app_ref_tag%%-*}-$h" out="$cache/platform-$h.tar"
  if [ -s "$out" ]; then
    say "cached: $out"
  else
    prune platform- ""
    timed platform-pack "$py" images/pack.py --out "$out" --name "$ref" \
      --layer "$base_dir/layer.tar" --layer "$env_dir/layer.tar" --layer "$app_dir/layer.tar" \
      --layer "$node_dir/layer.tar" --layer "$chp_dir/layer.tar" --layer "$pg_dir/layer.tar" \
      --user 1000:100 --workdir /srv "${IMAGE_ENV[@]}" \
      --entrypoint '["/usr/bin/tini", "--"]' --cmd '["jupyterhub"]' \
      --label "org.opencontainers.image.title=aistack-platform" --label "org.opencontainers.image.version=${app_ref_tag%%-*}" >&2
  fi
  results+=("AISTACK_PLATFORM_IMAGE=$ref" "AISTACK_PLATFORM_ARCHIVE=$out")
}

for target in "${targets[@]}"; do "build_$target"; done

if [ -n "$import_to" ]; then
  for line in "${results[@]}"; do
    case "$line" in
      *_ARCHIVE=*) timed "import-$(basename "${line#*=}")" ctr --address "$import_to" -n k8s.io images import "${line#*=}" >&2 ;;
    esac
  done
fi
printf '%s\n' "${results[@]}"
