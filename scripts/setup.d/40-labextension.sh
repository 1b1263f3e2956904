#!/usr/bin/env bash
# The JupyterLab extension "Run as job" + Jobs panel (labextension/): build the frontend with jlpm (the yarn
# that ships with JupyterLab in .venv) and @jupyter/builder, link it into .venv for the editable install,
# and enable its server extension aistack_lab. Wheels carry the prebuilt output (setup.cfg data_files),
# so only developers and this setup need Node. Idempotent: rebuilds only when sources changed.
set -euo pipefail
cd "$AISTACK_ROOT"
export PATH="$AISTACK_ROOT/.venv/bin:$PATH"

if ! command -v node >/dev/null 2>&1; then
  echo "node (>= 20) is needed to build the lab extension; install it and rerun" >&2
  exit 1
fi

out=labextension/aistack_lab/labextension
stamp="$out/.build-stamp"
sources_hash="$(cat package.json yarn.lock tsconfig.json labextension/src/*.ts labextension/style/* labextension/schema/*.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$out/package.json" ] || [ ! -d node_modules/@jupyter/builder ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sources_hash" ]; then
  jlpm install
  jlpm build:prod
  echo "$sources_hash" > "$stamp"
else
  echo "lab extension: up to date ($out)"
fi

# --- admin dashboard (issue 15 B): Chart.js for the admin page, copied (never committed) to a gitignored lib/
mkdir -p aistack_hub/admin/static/lib
cp node_modules/chart.js/dist/chart.umd.js aistack_hub/admin/static/lib/chart.umd.js
# --- end admin dashboard ---

# What the wheel installs as data_files (setup.cfg), the editable install gets as links/copies in .venv:
# the built frontend (linked, so rebuilds take effect) and the server extension's enable switch.
prefix="$(.venv/bin/python -c 'import sys; print(sys.prefix)')"
mkdir -p "$prefix/share/jupyter/labextensions" "$prefix/etc/jupyter/jupyter_server_config.d"
ln -sfn "$AISTACK_ROOT/$out" "$prefix/share/jupyter/labextensions/aistack_lab"
cp labextension/jupyter-config/server-config/aistack_lab.json "$prefix/etc/jupyter/jupyter_server_config.d/"
# (lists are captured first: `grep -q` in a pipe would SIGPIPE the lister under pipefail)
server_list="$(jupyter server extension list 2>&1)"
grep -q "aistack_lab.*enabled" <<<"$server_list" || {
  jupyter server extension list >&2
  echo "the aistack_lab server extension is not enabled" >&2
  exit 1
}
lab_list="$(jupyter labextension list 2>&1)"
grep -q "aistack_lab.*enabled.*OK" <<<"$lab_list" || {
  jupyter labextension list >&2
  echo "the aistack_lab lab extension is not loaded by JupyterLab" >&2
  exit 1
}
echo "lab extension aistack_lab: built and enabled"
