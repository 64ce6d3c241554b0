"""Named training recipes: the documented configurations, as ``key=value`` overrides of :class:`TrainConfig`.

``cxr-reid train --recipe NAME`` applies a recipe before ``--config``-less
defaults are overridden by ``--set``; ``scripts/train_demo.sh`` and
``benchmarks/bench_recipe.py`` use the same names, so what the README documents
is what ships and what is measured.

* ``cpu-pairs``: the CPU recipe of the shipped embedder (ResNet-18, 96 px,
  multi-similarity loss and miner on batches of 16 patients × 4 films).
* ``cpu-fast``: the same network, loss and batches at twice the learning rate (2e-3) on a longer
  cosine schedule (100 epochs, stopped at 4,200 steps: ~90 min on one core): held-out P@1 0.978 on the hard
  phantom (0.975 on validation after 77 min) and 0.988 on the standard one without fine-tuning
  (BENCHMARKS.md, "Embedder recipes"); the recipe of the next shipped embedder (``training/next/embedder``).
* ``gpu``: the product configuration (EfficientNet-B3 at 256 px; prepare with ``--size 256``).
"""
from __future__ import annotations

_CPU_BASE = ("model.backbone=resnet18", "model.embedding_dim=64", "image_size=96", "batch_size=64",
             "m_per_patient=4", "warmup_steps=100", "val_every=140", "val_max_patients=150",
             "num_workers=0", "loss=multi_similarity", "early_stop_patience=8")

RECIPES: dict[str, tuple[str, ...]] = {
    "cpu-pairs": (*_CPU_BASE, "epochs=40", "lr=1e-3"),
    "cpu-fast": (*_CPU_BASE, "epochs=100", "max_steps=4200", "lr=2e-3"),
    "gpu": ("model.backbone=efficientnet_b3", "image_size=256", "loss=multi_similarity"),
}


def recipe_overrides(name: str) -> list[str]:
    """The overrides of recipe ``name``; ValueError naming the known recipes."""
    try:
        return list(RECIPES[name])
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}") from None
