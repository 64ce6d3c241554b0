"""The ``cxr-reid train`` subcommand: :func:`add_train_arguments` + :func:`run_train_command`.

Under ``torchrun`` every process runs the same command line; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from reid_core.errors import TrainingError
from reid_core.train.config import TrainConfig

log = logging.getLogger(__name__)

TRAIN_EXAMPLES = """examples:
  cxr-reid train --workspace ws/nih
  cxr-reid train --workspace ws/nih --config train.json --set lr=1e-3 --set model.embedding_dim=32
  cxr-reid train --workspace ws/phantom --set model.backbone=resnet18 --set loss=multi_similarity --max-steps 2000
  torchrun --nproc_per_node 4 -m reid_core.train --workspace ws/nih        (multi-GPU; add --nnodes for more hosts)
  cxr-reid train --workspace ws/nih --print-config > train.json              (the resolved config, to edit)"""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``parser`` (returns it)."""
    parser.add_argument("--workspace", required=True, type=Path, help="workspace folder (prepared images)")
    parser.add_argument("--config", type=Path, help="TrainConfig as JSON (YAML when PyYAML is installed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, e.g. lr=1e-3, model.embedding_dim=32, augment.hflip=true "
                             "(repeatable)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue an interrupted run in the workspace (default); --no-resume starts over")
    parser.add_argument("--init-weights", type=Path, help="initial backbone weights (.safetensors)")
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps at most (overrides the config)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default auto)")
    parser.add_argument("--stop-after-steps", type=int,
                        help="end this session after N steps, saving the resume state (for time-limited jobs)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig an argument namespace describes: file, then ``--set``, then the dedicated flags."""
    from reid_core.train.config import load_config

    config = load_config(args.config) if args.config else TrainConfig()
    overrides = list(args.overrides or [])
    for flag, key in (("epochs", "epochs"), ("max_steps", "max_steps"), ("device", "device")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "init_weights", None) is not None:
        overrides.append(f"init_weights={json.dumps(str(args.init_weights))}")
    try:
        return config.with_overrides(overrides)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``cxr-reid train``; returns the exit code (0). CxrReidError subclasses carry user errors."""
    from reid_core.train.loop import train_embedder

    config = config_from_args(args)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if args.print_config:
        if is_main:
            print(json.dumps(config.to_dict(), indent=2))
        return 0
    result = train_embedder(args.workspace, config, resume=args.resume, progress=not args.quiet,
                            stop_after_steps=args.stop_after_steps)
    if is_main:
        best = result.best_metrics
        status = ("early stop" if result.stopped_early else "finished" if result.finished
                  else "paused (re-run to resume)")
        print(f"{status} at step {result.steps}/{result.total_steps}: best val mAP@R "
              f"{best.get('map_at_r', float('nan')):.4f}, P@1 {best.get('precision_at_1', float('nan')):.4f} "
              f"(step {result.best_step}, {result.val_source}); {result.images_per_sec:.1f} images/s; "
              f"model in {result.embedder_dir}")
    return 0
