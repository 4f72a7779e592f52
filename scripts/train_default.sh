#!/usr/bin/env bash
# Simulate the README's twin dataset, train the default model and evaluate it (twin data).
# Usage: bash scripts/train_default.sh [OUT_DIR]   (default runs/default-twin)
# Needs the whole Live Link Face takes beside the repository (../shared/data/arkit/alexdjulin_llf);
# without them it falls back to the shipped excerpts (other data, other numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default-twin}
PY=${PYTHON:-.venv/bin/python}
TAKES=(../shared/data/arkit/alexdjulin_llf/*.csv)
MOTION=()
if [ -e "${TAKES[0]}" ]; then MOTION=(--motion "${TAKES[@]}"); fi
mkdir -p "$OUT"
[ -e "$OUT/data" ] || /usr/bin/time -f "simulate %e s" \
  $PY -m imusic simulate -o "$OUT/data" --subjects 20 --minutes 4 "${MOTION[@]}" --procedural --seed 0
/usr/bin/time -f "train %e s wall, %U s user" \
  $PY -m imusic train --data "$OUT/data" --out "$OUT/ckpt"
$PY -m imusic eval --model "$OUT/ckpt" --data "$OUT/data" --out "$OUT/ckpt/eval"
$PY scripts/study_calibration.py --data "$OUT/data" --model "$OUT/ckpt" --json "$OUT/study.json"
$PY benchmarks/bench_runtime.py --quick --model "$OUT/ckpt"
