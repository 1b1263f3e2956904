#!/usr/bin/env bash
# Sets up everything the tests need and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
