#!/usr/bin/env bash
# Train the models shipped in checkpoints/ on the phantom, resumably: run it again after any
# interruption and every step continues where it stopped (finished steps are skipped).
#
#   bash scripts/train_demo.sh embedder      # CPU configuration (this is what ships today)
#   bash scripts/train_demo.sh longitudinal  # the same on normal films only: the drift embedder (not shipped)
#   bash scripts/train_demo.sh judge         # the independent recogniser that grades the generator (not in its losses)
#   bash scripts/train_demo.sh gan           # the counterfactual generator on a CPU (conditional autoencoder)
#   bash scripts/train_demo.sh next-embedder # the next embedder: recipe cpu-fast on the hard phantom → training/next
#   bash scripts/train_demo.sh next-gan      # the generator conditioned on it, in slices → training/next (see
#                                            # training/README.md: both replace the shipped pair when it is done)
#   bash scripts/train_demo.sh gan-adversarial   # the pure StyleGAN2-ADA objective (a GPU's job)
#   bash scripts/train_demo.sh all
#
# Settings (environment): WS (workspace, default workspaces/phantom1500), WS_LONG (the longitudinal
# embedder's workspace, default workspaces/phantom1500_normal: same data, its own embedder), WS_JUDGE (the
# judge's workspace, default workspaces/judge1500), PY (python), CAE_KIMG (the generator's budget, default 300),
# GAN_KIMG (adversarial budget, default 3000), GAN_SLICE_KIMG (kimg per call of either, default: all of it),
# RECIPE (the embedder's training recipe, default cpu-pairs: the one the shipped embedder was trained with),
# WS_HARD (the hard phantom's workspace, default workspaces/hard1500), WS_NEXT (the next generator's workspace,
# default workspaces/gan_next).
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${WS:-workspaces/phantom1500}
WS_LONG=${WS_LONG:-workspaces/phantom1500_normal}
WS_JUDGE=${WS_JUDGE:-workspaces/judge1500}
WS_HARD=${WS_HARD:-workspaces/hard1500}
WS_NEXT=${WS_NEXT:-workspaces/gan_next}
PY=${PY:-.venv/bin/python}
CLI="$PY -m reid_core.cli"
what=${1:-embedder}

data() {
  # 1500 synthetic patients (seed 0): ~4500 training images of 1210 people, 139 held-out test patients.
  # A second argument picks the difficulty (standard or hard).
  $CLI prepare --dataset phantom --patients 1500 --seed 0 --workspace "${1:-$WS}" --size 128 --quiet \
    --difficulty "${2:-standard}"
}

train_cpu() {
  # The CPU configuration (see BENCHMARKS.md, "Identity embedder on the phantom"): ResNet-18 at 96 px with
  # multi-similarity loss; EfficientNet-B3 from scratch did not leave chance level within a CPU budget here.
  # On a GPU, the product configuration is the same command with
  #   --set model.backbone=efficientnet_b3 --set image_size=256   (after `prepare --size 256`).
  local ws=$1; shift
  # the recipe's flags live in reid_core/train/recipes.py (`cxr-reid train --recipe cpu-pairs --print-config`)
  $CLI train --workspace "$ws" --quiet --recipe "${RECIPE:-cpu-pairs}" "$@"
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

judge() {
  # Another backbone (resnet14t), another seed, 64 px: grades the generator's identity beside the embedder it is
  # conditioned on; never used by any generator loss. One OpenMP thread by default: with anything else running on
  # the second vCPU, two threads oversubscribe and spin (measured here: 8-14 img/s on two threads vs 37-53 on one).
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $CLI train --workspace "$WS_JUDGE" --quiet \
    --set model.backbone=resnet14t --set model.embedding_dim=64 --set image_size=64 --set seed=1 \
    --set loss=multi_similarity --set batch_size=64 --set m_per_patient=4 \
    --set epochs=40 --set max_steps=1500 --set lr=1e-3 --set warmup_steps=100 --set val_every=250 \
    --set val_max_patients=150 --set num_workers=0
  $CLI embed --workspace "$WS_JUDGE"
  $CLI evaluate --workspace "$WS_JUDGE"
  $CLI ship --workspace "$WS_JUDGE" --out checkpoints/judge
}

judge_data() {
  # the judge trains on the same films as the embedder (hard links), in a workspace of its own
  data
  link_films "$WS_JUDGE"
}

next_embedder() {
  # Recipe cpu-fast on the hard phantom (~90 min on one core; BENCHMARKS.md, "Embedder recipes"): held-out P@1
  # 0.978 hard / 0.988 standard. Staged in training/next/embedder until its generator is trained.
  data "$WS_HARD" hard
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $CLI train --workspace "$WS_HARD" --quiet --recipe cpu-fast
  mkdir -p training/next/embedder
  cp "$WS_HARD"/embedder/{model.safetensors,config.json,metrics.json,train_config.json,train_log.jsonl} \
    training/next/embedder/
}

cae() {
  # The conditional autoencoder (CPU objective) in workspace $1, conditioned on the embedder in $2 (its
  # embeddings of the same films), 64 px; resumable in slices (GAN_SLICE_KIMG), continuing a run committed in
  # $3 (an earlier session's resume state), then judged on 100 held-out patients and shipped to $4 with the
  # notes in $5. Further arguments go to train-cae.
  local ws=$1 embedder=$2 resume=$3 out=$4 notes=$5; shift 5
  if [[ "$ws" != "$WS" ]]; then link_films "$ws"; fi
  mkdir -p "$ws/embedder"
  cp "$embedder/model.safetensors" "$embedder/config.json" "$ws/embedder/"
  $CLI embed --workspace "$ws"
  # a run started in an earlier session (on another machine) continues from its committed resume state
  if [[ ! -f "$ws/gan/resume/state.json" && -f "$resume/state.json" ]]; then
    mkdir -p "$ws/gan/resume"
    cp "$resume"/state*.safetensors "$resume"/state*.json "$ws/gan/resume/"
    cp "$resume/train_log.jsonl" "$ws/gan/train_log.jsonl"
  fi
  local slice=()
  [[ -n "${GAN_SLICE_KIMG:-}" ]] && slice=(--stop-after-kimg "$GAN_SLICE_KIMG")
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $CLI train-cae --workspace "$ws" --kimg "${CAE_KIMG:-300}" --quiet \
    "${slice[@]}" "$@"
  $CLI cae-evaluate --workspace "$ws" --judge checkpoints/judge
  $CLI ship-gan --workspace "$ws" --out "$out" --notes-file "$notes"
}

link_films() {
  # workspace $1 shares $WS's films (hard links), with an embedder of its own
  mkdir -p "$1"
  for f in "$WS"/images_128.npy "$WS"/images_128.state.json "$WS"/images_128.status.npy "$WS"/manifest.parquet \
           "$WS"/workspace.json "$WS"/bad_files.csv; do
    ln -f "$f" "$1/$(basename "$f")"
  done
}

gan() {
  cae "$WS" checkpoints/embedder training/gan_resume checkpoints/gan training/gan_card_notes.md
}

next_gan() {
  # conditioned on the next embedder; the identity cycle also asks the previous embedder (never the judge)
  cae "$WS_NEXT" training/next/embedder training/next/gan_resume training/next/gan training/next/gan_card_notes.md \
    --set 'id_ensemble=["training/id_ensemble/previous_embedder"]'
}

gan_adversarial() {
  # The pure StyleGAN2-ADA objective, 128 px preset: a GPU's job (~2,200 s/kimg at 256 px on this CPU).
  local slice=()
  [[ -n "${GAN_SLICE_KIMG:-}" ]] && slice=(--stop-after-kimg "$GAN_SLICE_KIMG")
  $CLI train-gan --workspace "$WS" --res 128 --kimg "${GAN_KIMG:-3000}" --quiet "${slice[@]}"
  $CLI gan-evaluate --workspace "$WS"
}

case "$what" in
  embedder) data; embedder ;;
  longitudinal) data "$WS_LONG"; longitudinal ;;
  judge) judge_data; judge ;;
  gan) data; gan ;;
  gan-adversarial) data; gan_adversarial ;;
  next-embedder) next_embedder ;;
  next-gan) data; next_gan ;;
  all) data; embedder; judge_data; judge; gan ;;
  *) echo "usage: $0 embedder|longitudinal|judge|gan|gan-adversarial|next-embedder|next-gan|all" >&2; exit 2 ;;
esac
