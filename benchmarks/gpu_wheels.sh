#!/usr/bin/env bash
# A wheel folder for benchmarks/gpu_mfu.sh on a GPU machine that has no network and whose image
# holds torch, transformers, accelerate, tokenizers, numpy, pyarrow, pillow, pyyaml, click, tqdm
# (a typical CUDA image) but not the rest of what the trainer imports. Run it here, where a
# package registry answers; carry DIR there; run `WHEELS=DIR bash benchmarks/gpu_mfu.sh` there.
#
#   bash benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]     (default 3.12: the GPU image's Python)
#
# Each package is pinned to the version this checkout's environment holds (pydantic and
# pydantic-core, polars and its runtime must match each other). DeepSpeed is published as a
# source archive only: its wheel is built here (pure Python; its ops compile there when used).
# polars' runtime is 54 MB as a wheel and 33 MB repacked as .tar.xz, which gpu_mfu.sh unpacks:
# carried folders are often capped in size.
set -euo pipefail
D=${1:?usage: gpu_wheels.sh DIR [PYTHON_VERSION]}
V=${2:-3.12}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
NAMES=${NAMES:-polars polars-runtime-32 pydantic pydantic-core annotated-types typing-inspection
hjson open_clip_torch ftfy wcwidth webdataset braceexpand}
pinned=()
for n in $NAMES; do
  pinned+=("$n==$("$PY" -m pip show "$n" | sed -n 's/^Version: //p')")
done
mkdir -p "$D"
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$V" --implementation cp \
  "${platforms[@]}" -d "$D" "${pinned[@]}"
ds=$("$PY" -m pip show deepspeed | sed -n 's/^Version: //p')
"$PY" -m pip wheel -q --no-deps --no-build-isolation "deepspeed==$ds" -w "$D"
for whl in "$D"/polars_runtime_*.whl; do
  [ -e "$whl" ] || continue
  tmp=$(mktemp -d)
  "$PY" -m zipfile -e "$whl" "$tmp"
  tar cf - -C "$tmp" . | xz -6 -T0 >"${whl%.whl}.tar.xz.part"
  mv "${whl%.whl}.tar.xz.part" "${whl%.whl}.tar.xz"
  rm -rf "$tmp" "$whl"
done
ls -l "$D"
du -sh "$D"
