#!/usr/bin/env bash
# Issue 18's GPU figures in one run on one GPU (budget: under 10 minutes on an H200):
# GRACE 1B bf16 (random ViT-L/14 + 1.1B Llama, benchmarks/configs/grace_1b_vitl14_random.yaml,
# 64 examples a step: 16 image->id + 48 query->id), demo data at 224 px.
#   1. ours with the new defaults (ZeRO stage auto -> 0 on one GPU, packed rows, fused AdamW,
#      SDPA, no activation checkpointing) against the Hugging Face Trainer given the same
#      config, model, micro-batches (padded) and DeepSpeed config: samples/s, MFU, peak memory;
#   2. the DataLoader alone against step 1's demand;
#   3. if BUDGET allows: ours at 256 examples a step (64 image->id + 192 query->id);
#   4. if BUDGET still allows: ours as RESULTS.md measured it before (ZeRO-3, checkpointing,
#      padded batches).
# BUDGET (seconds, default 590) bounds the whole script: steps that would not fit are skipped.
# Prints JSON per step and a side-by-side table (paste into benchmarks/RESULTS.md).
#
#   bash benchmarks/gpu_mfu.sh [WORKDIR]     (needs CUDA; `python3` on PATH or PYTHON=...)
# On a GPU machine without network whose image has torch and transformers but not the rest,
# WHEELS=DIR installs what benchmarks/gpu_wheels.sh put in DIR (into WORKDIR/site, no pip index).
# Plumbing check on a CPU: CFG=examples/configs/grace_tiny.yaml IMAGES=200 STEPS=8 bash ... (the
# figures then mean nothing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-/tmp/vlm-mfu}
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
vlmdata() { "$PY" -c 'import sys; from cli.vlmdata import main; sys.argv[0] = "vlmdata"; main()' "$@"; }
SECONDS=0
BUDGET=${BUDGET:-590}  # seconds for the whole script; later steps are skipped past it
if [ -n "${WHEELS:-}" ]; then  # a folder made by benchmarks/gpu_wheels.sh, for a machine offline
  SITE=${SITE:-$W/site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
  for t in "$WHEELS"/*.tar.xz; do if [ -e "$t" ]; then tar xJf "$t" -C "$SITE"; fi; done
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
"$PY" -c 'import torch, transformers, deepspeed; print("torch", torch.__version__, "transformers", transformers.__version__, "deepspeed", deepspeed.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")'
if [ ! -f "$W/ids.parquet" ]; then
  vlmdata demo "$W/data" --images "${IMAGES:-1200}" --test 100 --val 0 --tokenizer "$W/tok" --quiet
  vlmdata manifest karpathy "$W/data/dataset_demo.json" -o "$W/work"
  vlmdata shard "$W/work/manifest/manifest.parquet" --images "$W/data/images" -o "$W/shards" --quiet
  vlmdata build-ids "$W/shards" --scheme numeric --seed 0 --tokenizer "$W/tok" -o "$W/ids.parquet"
fi
echo "== data ready after ${SECONDS}s"
CFG=${CFG:-$ROOT/benchmarks/configs/grace_1b_vitl14_random.yaml}
STEPS=${STEPS:-30}
DATA=("model.tokenizer=$W/tok" "data.shards=$W/shards" "data.ids=$W/ids.parquet")
NEW=(deepspeed.zero_stage=auto model.gradient_checkpointing=false data.packing=auto)
OLD=(deepspeed.zero_stage=3 model.gradient_checkpointing=true data.packing=false)

echo "== 1/4 ours (new defaults) vs HF Trainer, same config and batches"
if "$PY" -c 'import accelerate' 2>/dev/null; then
  timeout 330 "$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${DATA[@]}" "${NEW[@]}" \
    --steps "$STEPS" --warmup 5 --work "$W/peer" || echo "step 1 failed or timed out (rc $?)"
else
  echo "accelerate is missing: HF side skipped (see WHEELS above); ours alone:"
  timeout 160 "$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${DATA[@]}" "${NEW[@]}" \
    --steps "$STEPS" --warmup 5 --work "$W/peer" --only ours && { cat "$W/peer/ours.json"; echo; }
fi
echo "== [${SECONDS}s] 2/4 the DataLoader alone against step 1's demand"
timeout 90 "$PY" "$ROOT/benchmarks/bench_loader.py" "$CFG" "${DATA[@]}" "${NEW[@]}" \
  --batches 60 --skip 5 --metrics "$W/peer/ours/metrics.jsonl" || echo "step 2 failed"
if [ "$SECONDS" -lt $((BUDGET - 170)) ]; then
  echo "== [${SECONDS}s] 3/4 ours at 256 examples a step (64 image->id + 192 query->id)"
  t=$((BUDGET - SECONDS)); timeout $((t < 240 ? t : 240)) "$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${DATA[@]}" \
    "${NEW[@]}" data.batch_size=256 --steps $((STEPS * 2 / 3)) --warmup 5 --work "$W/b256" --only ours \
    && { cat "$W/b256/ours.json"; echo; } || echo "step 3 failed or timed out"
fi
if [ "$SECONDS" -lt $((BUDGET - 160)) ]; then
  echo "== [${SECONDS}s] 4/4 ours as measured before (ZeRO-3, checkpointing, padded)"
  timeout 160 "$PY" "$ROOT/benchmarks/bench_train_hf.py" "$CFG" "${DATA[@]}" "${OLD[@]}" \
    --steps "$STEPS" --warmup 5 --work "$W/old" --only ours && { cat "$W/old/ours.json"; echo; } \
    || echo "step 4 failed or timed out"
else
  echo "step 4 skipped: under 160 s of the budget left"
fi
echo "== all done after ${SECONDS}s"
