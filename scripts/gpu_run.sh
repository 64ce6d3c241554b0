#!/usr/bin/env bash
# The GPU benchmarks of issue 7 in one script, for a lent GPU machine (the `device` tool: Python 3.12 with
# torch, timm, torchvision, pandas, pyarrow, scikit-learn; no package registry, a fresh machine per session).
#
#   here:  bash scripts/gpu_run.sh fetch     # .whl/: wheels of what that machine lacks (~27 MB; git-ignored)
#   there: bash scripts/gpu_run.sh bench [--only embed] [--quick]
#          (device tool: carry [".whl"]; the results land in $OUT/benchmarks_cuda.json)
#
# `bench` installs the carried wheels into /tmp/site only when their packages do not import, then runs
# `python -m benchmarks --device cuda`: embed (B3 256 px, bf16 + channels_last: images/s, goal >= 5000, and
# end-to-end / model-only >= 0.9), train (256 px: images/s, data-wait share), gan (s/kimg of the 64 and
# 128 px presets beside the A100 anchor) and counterfactual (render latency). All four take ~5-8 min;
# split them with --only across calls if the per-call limit is near. DEVICE=cpu runs the same path on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=.whl
MISSING=(pytorch-metric-learning faiss-cpu pydicom pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle)
IMPORTS="import pytorch_metric_learning, faiss, pydicom, pylibjpeg, libjpeg, openjpeg, rle"

fetch() {
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${MISSING[@]}"
  du -sh "$WHEELS"
}

bench() {
  if ! "$PY" -c "$IMPORTS" 2>/dev/null; then
    [[ -d "$WHEELS" ]] || { echo "packages missing and no $WHEELS/: run 'bash scripts/gpu_run.sh fetch' here first" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "$IMPORTS"
  fi
  "$PY" -m benchmarks --device "${DEVICE:-cuda}" --out "${OUT:-.}/benchmarks_${DEVICE:-cuda}.json" "$@"
}

case "${1:-}" in
  fetch) fetch ;;
  bench) shift; bench "$@" ;;
  *) echo "usage: bash scripts/gpu_run.sh fetch | bench [benchmark options]" >&2; exit 2 ;;
esac
