#!/usr/bin/env bash
# Sets up everything AIStack Hub needs on a fresh Debian machine, idempotently.
#   scripts/setup.sh run   - what running the product needs (Python venv, Node tools, lab extension)
#   scripts/setup.sh test  - that plus what the tests need (PostgreSQL, Chromium, Kubernetes control plane)
# Each step is a file in scripts/setup.d/, run in name order; a step reads $AISTACK_SETUP_MODE.
set -euo pipefail
cd "$(dirname "$0")/.."
export AISTACK_SETUP_MODE="${1:-run}"
export AISTACK_ROOT="$PWD"
for step in scripts/setup.d/*.sh; do
  echo "==> setup ($AISTACK_SETUP_MODE): $step"
  bash "$step"
done
