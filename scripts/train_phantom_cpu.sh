#!/usr/bin/env bash
# The embedder acceptance run of the CPU configuration (issue: identity embedder):
# 400 phantom patients at 128 px, EfficientNet-B3 from scratch, triplet loss with
# semi-hard mining. Every step resumes: run it again after an interruption.
set -euo pipefail
WS=${WS:-workspaces/phantom400}
CLI=".venv/bin/python -m reid_core.cli"
$CLI prepare --dataset phantom --patients 400 --seed 0 --workspace "$WS" --size 128 --quiet
$CLI train --workspace "$WS" --quiet \
  --set model.backbone=efficientnet_b3 --set model.embedding_dim=64 --set model.image_size=128 \
  --set loss=triplet --set miner=semihard --set margin=0.1 \
  --set epochs=40 --set lr=1e-3 --set warmup_steps=100 --set val_every=150 \
  --set early_stop_patience=6 --set num_workers=0 "$@"
$CLI embed --workspace "$WS"
$CLI evaluate --workspace "$WS"
