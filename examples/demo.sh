#!/usr/bin/env bash
# `make demo`: the whole vlm pipeline on built-in data, on a CPU, in a few minutes.
#
#   bash examples/demo.sh [OUT]          (default OUT: demo-out)
#
# demo data (Karpathy JSON + JPEGs) -> manifest -> shards -> identifiers (numeric and structured)
# -> trie over the test ids -> GRACE training on 2 CPU ranks (DeepSpeed, gloo) -> generative
# retrieval Recall@1/5/10 -> a short FROMAGe run on the same shards -> embedding retrieval ->
# one table next to chance (chance@K = K / number of test images).
#
# Sizes can be changed through the environment, e.g. a quick smoke run:
#   DEMO_IMAGES=600 DEMO_TEST=50 DEMO_GRACE_STEPS=100 DEMO_FROMAGE_STEPS=30 bash examples/demo.sh /tmp/d
set -euo pipefail

OUT=${1:-demo-out}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${VLM_BIN:-$ROOT/.venv/bin}
CONFIGS=$ROOT/examples/configs
IMAGES=${DEMO_IMAGES:-3000}
TEST=${DEMO_TEST:-100}
VAL=${DEMO_VAL:-100}
RANKS=${DEMO_RANKS:-2}
GRACE_STEPS=${DEMO_GRACE_STEPS:-1000}
FROMAGE_STEPS=${DEMO_FROMAGE_STEPS:-600}

# The same numbers on every run: one thread per process (two ranks on two cores would fight
# over them, and a sum split over another thread count rounds differently), and the same CPU
# kernels on every x86-64 machine with AVX2: an AVX-512 CPU would otherwise pick kernels that
# round differently, and 1000 training steps turn the last bit into other Recall@K figures.
# Library versions are pinned by constraints.txt (`make setup` installs with it); the table
# ends with the versions and pins the eval reports were made with.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 WANDB_MODE=disabled
export PATH="$BIN:$PATH"

SECONDS=0
step() { printf '\n== [%3ds] %s\n' "$SECONDS" "$*"; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step "1/10 demo data: $IMAGES images of coloured shapes, 5 captions each ($TEST test)"
vlmdata demo "$OUT/data" --images "$IMAGES" --test "$TEST" --val "$VAL" \
  --tokenizer "$OUT/tok" --clip "$OUT/clip"

step "2/10 manifest (Karpathy JSON reader)"
vlmdata manifest karpathy "$OUT/data/dataset_demo.json" -o "$OUT/work"

step "3/10 shards + index"
vlmdata shard "$OUT/work/manifest/manifest.parquet" --images "$OUT/data/images" -o "$OUT/shards" \
  --samples-per-shard 1000
vlmdata view "$OUT/shards" -o "$OUT/shards.html"   # a page to look at: samples, histograms

step "4/10 numeric identifiers"
vlmdata build-ids "$OUT/shards" --scheme numeric --seed 0 --tokenizer "$OUT/tok" \
  -o "$OUT/ids/numeric.parquet"

step "5/10 structured identifiers: tiny CLIP embeddings -> GRACE's hierarchical k-means"
vlmdata embed "$OUT/shards" --model "$OUT/clip" -o "$OUT/ids/clip.npy"
vlmdata build-ids "$OUT/shards" --scheme structured --kmeans grace --embeddings "$OUT/ids/clip.npy" \
  --tokenizer "$OUT/tok" --add-tokens "$OUT/tok-structured" -o "$OUT/ids/structured.parquet"

step "6/10 trie over the test identifiers"
vlmdata build-trie --ids "$OUT/ids/structured.parquet" --tokenizer "$OUT/tok-structured" \
  --split test -o "$OUT/ids/test-structured.trie"
vlmdata build-trie --ids "$OUT/ids/numeric.parquet" --tokenizer "$OUT/tok" \
  --split test -o "$OUT/ids/test-numeric.trie"

step "7/10 GRACE training: $RANKS CPU ranks, $GRACE_STEPS steps"
vlmtrain launch "$CONFIGS/demo_grace.yaml" --num-gpus "$RANKS" \
  "model.vision=local-dir:$OUT/clip" "model.tokenizer=$OUT/tok-structured" \
  "data.shards=$OUT/shards" "data.ids=$OUT/ids/structured.parquet" \
  "schedule.max_steps=$GRACE_STEPS" "output_dir=$OUT/runs/grace"

step "8/10 generative retrieval: test captions -> constrained beam search -> Recall@K"
vlmtrain eval retrieval-generative --checkpoint "$OUT/runs/grace" --data "$OUT/shards" \
  --split test --trie "$OUT/ids/test-structured.trie" --ids "$OUT/ids/structured.parquet" \
  --batch-size 50 -o "$OUT/reports/grace.json" --html "$OUT/reports/grace.html"

step "9/10 FROMAGe (frozen LM and CLIP; [RET] + linear maps): 1 rank, $FROMAGE_STEPS steps"
vlmtrain launch "$CONFIGS/demo_fromage.yaml" --num-gpus 1 \
  "model.vision=local-dir:$OUT/clip" "model.tokenizer=$OUT/tok" \
  "data.shards=$OUT/shards" "schedule.max_steps=$FROMAGE_STEPS" "output_dir=$OUT/runs/fromage"
vlmtrain eval retrieval-embedding --checkpoint "$OUT/runs/fromage" --data "$OUT/shards" \
  --split test --batch-size 50 -o "$OUT/reports/fromage.json"

step "10/10 results"
vlmdata demo-report "$OUT/shards" \
  "GRACE structured ids=$OUT/reports/grace.json" \
  "FROMAGe embeddings=$OUT/reports/fromage.json" -o "$OUT/results.md"
printf '\ndemo finished in %dm%02ds; artifacts in %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$OUT"
