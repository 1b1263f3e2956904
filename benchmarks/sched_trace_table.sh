#!/usr/bin/env bash
# Allocation benchmark on the four shared Alibaba traces, all policies, seeds 42..51 (docs/scheduling.md).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TRACES:-../shared/traces/alibaba-gpu-v2023}
PY=${PYTHON:-.venv/bin/python}
for trace in default gpushare40 multigpu20 gpuspec10; do
  echo "== $trace"
  "$PY" -m job_runner.simulate --nodes "$T/openb_node_list_gpu_node.csv" --pods "$T/openb_pod_list_$trace.csv" \
    --policy first-fit,best-fit,fgd,default --seeds "${SEEDS:-10}"
done
