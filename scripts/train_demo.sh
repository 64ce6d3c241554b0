#!/usr/bin/env bash
# Train the models shipped in checkpoints/ on the phantom, resumably: run it again after any
# interruption and every step continues where it stopped (finished steps are skipped).
#
#   bash scripts/train_demo.sh embedder      # CPU configuration (this is what ships today)
#   bash scripts/train_demo.sh longitudinal  # the same on normal films only: the drift embedder (not shipped)
#   bash scripts/train_demo.sh gan           # needs a GPU; resumes across ~30 min slices
#   bash scripts/train_demo.sh all
#
# Settings (environment): WS (workspace, default workspaces/phantom1500), WS_LONG (the longitudinal
# embedder's workspace, default workspaces/phantom1500_normal: same data, its own embedder), PY (python),
# GAN_KIMG (GAN budget, default 3000), GAN_SLICE_KIMG (kimg per call, default: all of it).
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WS:-workspaces/phantom1500}
WS_LONG=${WS_LONG:-workspaces/phantom1500_normal}
PY=${PY:-.venv/bin/python}
CLI="$PY -m reid_core.cli"
what=${1:-embedder}

data() {
  # 1500 synthetic patients (seed 0): ~4500 training images of 1210 people, 139 held-out test patients.
  $CLI prepare --dataset phantom --patients 1500 --seed 0 --workspace "${1:-$WS}" --size 128 --quiet
}

train_cpu() {
  # The CPU configuration (see BENCHMARKS.md, "Identity embedder on the phantom"): ResNet-18 at 96 px with
  # multi-similarity loss; EfficientNet-B3 from scratch did not leave chance level within a CPU budget here.
  # On a GPU, the product configuration is the same command with
  #   --set model.backbone=efficientnet_b3 --set image_size=256   (after `prepare --size 256`).
  local ws=$1; shift
  $CLI train --workspace "$ws" --quiet \
    --set model.backbone=resnet18 --set model.embedding_dim=64 --set image_size=96 \
    --set loss=multi_similarity --set batch_size=64 --set m_per_patient=4 \
    --set epochs=40 --set lr=1e-3 --set warmup_steps=100 --set val_every=140 --set val_max_patients=150 \
    --set early_stop_patience=8 --set num_workers=0 "$@"
  $CLI embed --workspace "$ws"
  $CLI evaluate --workspace "$ws"
}

embedder() {
  train_cpu "$WS"
  $CLI ship --workspace "$WS" --out checkpoints/embedder
}

longitudinal() {
  # Normal films only (fewer per epoch, so the step budget is pinned to the shipped run's 2600 steps).
  train_cpu "$WS_LONG" --set train_findings=normal --set epochs=100 --set max_steps=2600
}

gan() {
  # Conditioned on the shipped embedder's embeddings of the same workspace; 128 px preset.
  local slice=()
  [[ -n "${GAN_SLICE_KIMG:-}" ]] && slice=(--stop-after-kimg "$GAN_SLICE_KIMG")
  $CLI train-gan --workspace "$WS" --res 128 --kimg "${GAN_KIMG:-3000}" --quiet "${slice[@]}"
  $CLI gan-evaluate --workspace "$WS"
}

case "$what" in
  embedder) data; embedder ;;
  longitudinal) data "$WS_LONG"; longitudinal ;;
  gan) data; gan ;;
  all) data; embedder; gan ;;
  *) echo "usage: $0 embedder|longitudinal|gan|all" >&2; exit 2 ;;
esac
