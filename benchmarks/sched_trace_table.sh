#!/usr/bin/env bash
# Allocation benchmark on every shared Alibaba task list (openb_pod_list_*.csv), all policies, seeds 42..51
# (docs/scheduling.md). A new variant dropped into the folder is picked up: nothing here names the traces.
# One simulation process at a time (nice -n 10); the --json lines go to $OUT/<trace>.jsonl, then the
# markdown table of docs/scheduling.md is printed (benchmarks/sched_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TRACES:-../shared/traces/alibaba-gpu-v2023}
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
for pods in "$T"/openb_pod_list_*.csv; do
  trace=$(basename "$pods" .csv); trace=${trace#openb_pod_list_}
  echo "== $trace" >&2
  nice -n 10 "$PY" -m job_runner.simulate --nodes "$T/openb_node_list_gpu_node.csv" --pods "$pods" \
    --policy "${POLICIES:-best-fit,fgd,default}" --seeds "${SEEDS:-10}" --json > "$OUT/$trace.jsonl"
done
echo "results: $OUT" >&2
"$PY" benchmarks/sched_table.py "$OUT"
