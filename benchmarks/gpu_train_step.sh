#!/usr/bin/env bash
# A real-size bf16 DeepSpeed run on one GPU: demo shards -> numeric ids -> GRACE with ViT-L/14 +
# a 1.1B Llama (random weights, benchmarks/configs/grace_1b_vitl14_random.yaml), ZeRO-3, 30 steps
# of 64 examples; then the trie processor on the GPU (bench_trie_gpu.py).
# Prints samples/s, tokens/s and peak GPU memory from the run's metrics.jsonl.
#
#   bash benchmarks/gpu_train_step.sh [WORKDIR]      (needs CUDA; uses `python3` on PATH)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-/tmp/vlm-gpu}
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
vlmdata() { "$PY" -c 'import sys; from cli.vlmdata import main; sys.argv[0] = "vlmdata"; main()' "$@"; }
vlmtrain() { "$PY" -c 'import sys; from cli.vlmtrain import main; sys.argv[0] = "vlmtrain"; main()' "$@"; }
SECONDS=0
"$PY" -c 'import torch, transformers, deepspeed, open_clip; print("torch", torch.__version__, "transformers", transformers.__version__, "deepspeed", deepspeed.__version__, "open_clip", open_clip.__version__, torch.cuda.get_device_name())'
vlmdata demo "$W/data" --images 1200 --test 100 --val 0 --tokenizer "$W/tok" --quiet
vlmdata manifest karpathy "$W/data/dataset_demo.json" -o "$W/work"
vlmdata shard "$W/work/manifest/manifest.parquet" --images "$W/data/images" -o "$W/shards" --quiet
vlmdata build-ids "$W/shards" --scheme numeric --seed 0 --tokenizer "$W/tok" -o "$W/ids.parquet"
echo "data ready after ${SECONDS}s"
vlmtrain launch "$ROOT/benchmarks/configs/grace_1b_vitl14_random.yaml" --num-gpus 1 \
  "model.tokenizer=$W/tok" "data.shards=$W/shards" "data.ids=$W/ids.parquet" \
  "output_dir=$W/run" "log.progress=false"
echo "training done after ${SECONDS}s"
"$PY" - "$W/run/metrics.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
steady = [r for r in rows if r["step"] > 5]
print(json.dumps({
    "steps": len(rows), "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
    "median_samples_per_s": statistics.median(r["samples_per_s"] for r in steady),
    "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
    "max_mem_gib": max(r.get("max_mem_gib", 0.0) for r in rows),
}, indent=1))
PY
du -sh "$W/run"/* 2>/dev/null | tail -5
"$PY" "$ROOT/benchmarks/bench_trie_gpu.py"
echo "all done after ${SECONDS}s"
