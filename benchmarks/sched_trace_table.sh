#!/usr/bin/env bash
# Allocation benchmark on every shared Alibaba task list (openb_pod_list_*.csv), all policies, seeds 42..51
# (docs/scheduling.md). A new variant dropped into the folder is picked up: nothing here names the traces.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TRACES:-../shared/traces/alibaba-gpu-v2023}
PY=${PYTHON:-.venv/bin/python}
for pods in "$T"/openb_pod_list_*.csv; do
  trace=$(basename "$pods" .csv); trace=${trace#openb_pod_list_}
  echo "== $trace"
  "$PY" -m job_runner.simulate --nodes "$T/openb_node_list_gpu_node.csv" --pods "$pods" \
    --policy "${POLICIES:-best-fit,fgd,default}" --seeds "${SEEDS:-10}"
done
