"""The ``cxr-reid train`` subcommand: :func:`add_train_arguments` + :func:`run_train_command`.

Under ``torchrun`` every process runs the same command line; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from reid_core.errors import TrainingError
from reid_core.train.config import TrainConfig
from reid_core.train.runner import add_run_arguments, resolve_config, run_training

log = logging.getLogger(__name__)

TRAIN_EXAMPLES = """examples:
  cxr-reid train --workspace ws/nih
  cxr-reid train --workspace ws/phantom --recipe cpu-pairs                    (the CPU recipe the demo ships)
  cxr-reid train --workspace ws/nih --config train.json --set lr=1e-3 --set model.embedding_dim=32
  cxr-reid train --workspace ws/phantom --set model.backbone=resnet18 --set loss=multi_similarity --max-steps 2000
  torchrun --nproc_per_node 4 -m reid_core.train --workspace ws/nih        (multi-GPU; add --nnodes for more hosts)
  cxr-reid train --workspace ws/nih --print-config > train.json              (the resolved config, to edit)"""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``parser`` (returns it)."""
    parser.add_argument("--workspace", required=True, type=Path, help="workspace folder (prepared images)")
    parser.add_argument("--config", type=Path, help="TrainConfig as JSON (YAML when PyYAML is installed)")
    parser.add_argument("--recipe", help="a documented recipe applied before --set: cpu-pairs (the shipped "
                                         "CPU embedder's), gpu (EfficientNet-B3 at 256 px)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, e.g. lr=1e-3, model.embedding_dim=32, augment.hflip=true "
                             "(repeatable)")
    parser.add_argument("--init-weights", type=Path, help="initial backbone weights (.safetensors)")
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps at most (overrides the config)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default auto)")
    return add_run_arguments(parser, "WORKSPACE/embedder", "steps")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig an argument namespace describes: file, then ``--recipe``, then ``--set``, then the
    dedicated flags."""
    from reid_core.train.config import load_config
    from reid_core.train.recipes import recipe_overrides

    config = load_config(args.config) if args.config else TrainConfig()
    init = getattr(args, "init_weights", None)
    recipe = getattr(args, "recipe", None)
    try:
        items = (recipe_overrides(recipe) if recipe else []) + list(args.overrides or [])
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    return resolve_config(config, items, {
        "epochs": getattr(args, "epochs", None), "max_steps": getattr(args, "max_steps", None),
        "device": getattr(args, "device", None), "init_weights": None if init is None else str(init)})


def _outcome(result: Any) -> str:
    best = result.best_metrics
    status = "early stop" if result.stopped_early else "finished" if result.finished else "paused (re-run to resume)"
    return (f"{status} at step {result.steps}/{result.total_steps}: best val mAP@R "
            f"{best.get('map_at_r', float('nan')):.4f}, P@1 {best.get('precision_at_1', float('nan')):.4f} "
            f"(step {result.best_step}, {result.val_source}); {result.images_per_sec:.1f} images/s; "
            f"model in {result.embedder_dir}")


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``cxr-reid train``; returns the exit code (0). CxrReidError subclasses carry user errors."""
    from reid_core.train.loop import train_embedder

    config = config_from_args(args)
    return run_training(args, config, lambda: train_embedder(
        args.workspace, config, resume=args.resume, progress=not args.quiet,
        stop_after_steps=args.stop_after_steps), _outcome)
