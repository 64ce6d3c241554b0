"""File names of every artefact, in one place.

:class:`~reid_core.workspace.Workspace` turns them into a workspace's paths;
the checkpoint writers (:mod:`reid_core.checkpoint`, ``gan.io``, ``gan.cae.io``),
the shipped ``checkpoints/`` folders and the pages use them through it, so no
module spells a weights file's name. A checkpoint is ``<name>.safetensors``
(weights) plus ``<meta>.json`` (its verified record).
"""
from __future__ import annotations

WEIGHTS_SUFFIX = ".safetensors"

EMBEDDER_NAME, EMBEDDER_META = "model", "config"
GENERATOR_NAME, GENERATOR_META = "G_ema", "config"
ENCODER_NAME, ENCODER_META = "E_ema", "encoder"

RUN_METRICS = "metrics.json"      # a trainer's summary (embedder/), or a generator's judged figures (gan/)
TRAIN_LOG = "train_log.jsonl"
RUN_CONFIG = "train_config.json"  # a training session's resolved options
EMBEDDER_CARD = "card.json"       # what a shipped embedder was trained on (decides what is held out)
MODEL_CARD = "MODEL_CARD.md"


def weights_file(name: str) -> str:
    """``name`` + the weights suffix, e.g. ``model.safetensors``."""
    return name + WEIGHTS_SUFFIX


def record_file(meta: str) -> str:
    """A checkpoint record's file name, e.g. ``config.json``."""
    return meta + ".json"


EMBEDDER_FILES = (weights_file(EMBEDDER_NAME), record_file(EMBEDDER_META))
GENERATOR_FILES = (weights_file(GENERATOR_NAME), record_file(GENERATOR_META))
ENCODER_FILES = (weights_file(ENCODER_NAME), record_file(ENCODER_META))
