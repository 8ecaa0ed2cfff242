#!/usr/bin/env bash
# `make bench`: every CPU benchmark in turn, each printing figures and ratios against the peer
# measured in the same run. Output also goes to benchmarks/out/NAME.txt (not committed); the
# figures recorded in benchmarks/RESULTS.md came from these same commands.
#
#   bash benchmarks/run_all.sh            # all (about 15-25 minutes on 2 cores)
#   bash benchmarks/run_all.sh trie       # the ones whose name contains "trie"
#
# GPU figures come from benchmarks/gpu_train_step.sh and gpu_mfu.sh (need CUDA).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$ROOT/benchmarks/out
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
only=${1:-}

bench() {  # NAME ARGS...
  local name=$1
  shift
  [[ -z $only || $name == *$only* ]] || return 0
  printf '\n===== %s: %s\n' "$name" "$*"
  "$PY" "$ROOT/benchmarks/$name.py" "$@" 2>&1 | tee "$OUT/$name.txt"
}

bench bench_filter_urls
bench bench_shards --n 3000 --repeats 3
bench bench_trie
bench bench_download --n 500 --repeats 5 --fetch-repeats 2
if [[ -z $only || train_hf == *$only* ]]; then  # the trainer against the HF Trainer (CPU smoke)
  printf '\n===== cpu_train_hf.sh\n'
  bash "$ROOT/benchmarks/cpu_train_hf.sh" 2>&1 | tee "$OUT/train_hf.txt"
fi
