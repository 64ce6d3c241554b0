#!/usr/bin/env bash
# Fork the counterfactual generator's run and train the fork on with other options, side by side with the
# original, for A/B comparisons at equal kimg (issue 13):
#
#   bash benchmarks/cae_fork.sh NAME KIMG [train-cae options...]
#   bash benchmarks/cae_fork.sh plain 162
#   bash benchmarks/cae_fork.sh ens 162 --set 'id_ensemble=["workspaces/recipes/hard-cpu-fast-90/embedder"]' \
#        --set id_ensemble_start_kimg=142
#
# The fork lives in workspaces/cae_forks/NAME: the source workspace's image store, manifest, embedder and
# embeddings hard-linked or copied (never written), and a copy of its gan/ resume state and log; it trains up to
# KIMG in total (the budget, which may change on resume), then `cae-evaluate` judges it with the independent
# judge. The judged figures go to benchmarks/results/cae_forks/NAME.json. Run again after an interruption: it resumes.
# Settings (environment): WS (source, default workspaces/phantom1500), JUDGE (default checkpoints/judge),
# PY (python).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: $0 NAME KIMG [train-cae options...]}
kimg=${2:?usage: $0 NAME KIMG [train-cae options...]}
shift 2
WS=${WS:-workspaces/phantom1500}
JUDGE=${JUDGE:-checkpoints/judge}
PY=${PY:-.venv/bin/python}
fork=workspaces/cae_forks/$name
if [[ ! -d "$fork/gan/resume" ]]; then
  mkdir -p "$fork/gan/resume" "$fork/embedder"
  for f in "$WS"/images_*.npy "$WS"/images_*.json "$WS"/manifest.parquet "$WS"/workspace.json \
           "$WS"/bad_files.csv "$WS"/embeddings.npz; do
    ln -f "$f" "$fork/$(basename "$f")"
  done
  cp "$WS"/embedder/* "$fork/embedder/"
  cp "$WS"/gan/resume/state*.safetensors "$WS"/gan/resume/state*.json "$fork/gan/resume/"
  cp "$WS"/gan/train_log.jsonl "$fork/gan/"
fi
start=$(date +%s)
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $PY -m reid_core.cli train-cae --workspace "$fork" --quiet --kimg "$kimg" "$@"
echo "train-cae: $(( $(date +%s) - start )) s wall"
$PY -m reid_core.cli cae-evaluate --workspace "$fork" --judge "$JUDGE"
mkdir -p benchmarks/results/cae_forks
cp "$fork/gan/metrics.json" "benchmarks/results/cae_forks/$name.json"
