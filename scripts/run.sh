#!/usr/bin/env bash
# Sets up and starts the embedded default deployment on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh run
exec .venv/bin/aistack-hub up "$@"
