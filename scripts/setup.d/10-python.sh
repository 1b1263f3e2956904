#!/usr/bin/env bash
# Python: a virtual environment in .venv with the package installed editable.
set -euo pipefail
cd "$AISTACK_ROOT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
if [ "$AISTACK_SETUP_MODE" = test ]; then
  .venv/bin/python -m pip install -q -e ".[test,postgres,kubernetes]"
else
  .venv/bin/python -m pip install -q -e ".[postgres]"
fi
