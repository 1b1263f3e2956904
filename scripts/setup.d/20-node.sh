#!/usr/bin/env bash
# Node tools: configurable-http-proxy (JupyterHub's proxy) from npm.
# Idempotent: installs only what is missing. Installed globally when we may write the global prefix
# (root, or a user-owned prefix), otherwise into the repo's node_modules (scripts/test.sh puts
# node_modules/.bin on PATH; aistack-hub looks there too).
set -euo pipefail
cd "$AISTACK_ROOT"
CHP_VERSION="${CHP_VERSION:-4}"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "node and npm are needed (for configurable-http-proxy); install them and rerun" >&2
    exit 1
  fi
fi

if command -v configurable-http-proxy >/dev/null 2>&1 || [ -x node_modules/.bin/configurable-http-proxy ]; then
  echo "configurable-http-proxy: $(command -v configurable-http-proxy || echo node_modules/.bin/configurable-http-proxy)"
else
  prefix="$(npm prefix -g)"
  if [ -w "$prefix" ] || [ "$(id -u)" = 0 ]; then
    npm install -g --no-fund --no-audit "configurable-http-proxy@${CHP_VERSION}"
  else
    npm install --no-save --no-fund --no-audit "configurable-http-proxy@${CHP_VERSION}"
  fi
fi
