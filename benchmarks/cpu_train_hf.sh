#!/usr/bin/env bash
# CPU smoke of issue 18's training benchmarks (figures in benchmarks/RESULTS.md, labelled CPU):
# tiny GRACE (2-block ViT, 2-layer GPT-2; examples/configs/grace_tiny.yaml) at GRACE's real mix,
# 64 examples a step (16 image->id + 48 query->id), fp32, one CPU rank:
#   1. ours (packed rows, fused AdamW, SDPA) against the HF Trainer on the same config, model,
#      micro-batches (padded) and DeepSpeed config (benchmarks/bench_train_hf.py);
#   2. ours with data.packing=false (what packing alone buys);
#   3. the DataLoader alone against step 1's demand (benchmarks/bench_loader.py).
#
#   bash benchmarks/cpu_train_hf.sh [WORKDIR]        (about 5 minutes on 2 cores)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-/tmp/vlm-cpu-train}
PY=${PYTHON:-$ROOT/.venv/bin/python}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" DS_ACCELERATOR=cpu TOKENIZERS_PARALLELISM=false
vlmdata() { "$PY" -c 'import sys; from cli.vlmdata import main; sys.argv[0] = "vlmdata"; main()' "$@"; }
if [ ! -f "$W/ids.parquet" ]; then
  vlmdata demo "$W/data" --images 240 --test 20 --val 0 --tokenizer "$W/tok" --quiet
  vlmdata manifest karpathy "$W/data/dataset_demo.json" -o "$W/work"
  vlmdata shard "$W/work/manifest/manifest.parquet" --images "$W/data/images" -o "$W/shards" --quiet
  vlmdata build-ids "$W/shards" --scheme numeric --seed 0 --tokenizer "$W/tok" -o "$W/ids.parquet"
fi
CFG="$ROOT/examples/configs/grace_tiny.yaml"
ARGS=("model.tokenizer=$W/tok" "data.shards=$W/shards" "data.ids=$W/ids.parquet"
      data.batch_size=64 data.max_length=128)
echo "== 1/3 ours vs HF Trainer"
"$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${ARGS[@]}" --steps 12 --warmup 2 --work "$W/b64"
echo "== 2/3 ours, data.packing=false"
"$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${ARGS[@]}" data.packing=false \
  --steps 12 --warmup 2 --work "$W/b64nopack" --only ours
cat "$W/b64nopack/ours.json"
echo "== 3/3 the loader alone"
"$PY" "$ROOT/benchmarks/bench_loader.py" "$CFG" "${ARGS[@]}" --batches 40 --skip 5 \
  --metrics "$W/b64/ours/metrics.jsonl"
