"""The ``cxr-reid train-gan`` subcommand: :func:`add_train_gan_arguments` + :func:`run_train_gan_command`.

Under ``torchrun`` every process runs the same command line; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gan.config import PRESETS
from gan.train_config import GanTrainConfig, load_gan_train_config
from reid_core.train.runner import add_run_arguments, resolve_config, run_training

log = logging.getLogger(__name__)

TRAIN_GAN_EXAMPLES = """examples:
  cxr-reid train-gan --workspace ws/phantom --res 128 --kimg 2000
  cxr-reid train-gan --workspace ws/phantom --res 64 --batch 64 --set cond_ramp_kimg=200 --set arch.conv_clamp=256
  cxr-reid train-gan --workspace ws/phantom --res 128 --stop-after-kimg 100     (time-sliced jobs; re-run to go on)
  cxr-reid train-gan --workspace ws/phantom --res 64 --unconditional            (no embeddings needed)
  torchrun --nproc_per_node 4 -m reid_core.cli train-gan --workspace ws/nih --res 256   (multi-GPU)"""


def add_train_gan_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train-gan`` options to ``parser`` (returns it)."""
    parser.add_argument("--workspace", required=True, type=Path,
                        help="workspace folder (prepared images; embeddings.npz unless --unconditional)")
    parser.add_argument("--config", type=Path, help="GanTrainConfig as JSON (or a gan/config.json record)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, e.g. lr_g=0.002, r1_gamma=0.5, augment=false, "
                             "arch.conv_clamp=256 (repeatable)")
    parser.add_argument("--res", type=int, help="training resolution in px (default: the preset's)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="architecture preset (default: the one named like --res, else the config's)")
    parser.add_argument("--batch", type=int, help="images per step over all processes")
    parser.add_argument("--kimg", type=float, help="training budget in thousands of real images")
    parser.add_argument("--unconditional", action="store_true",
                        help="train without identity conditions (c_dim 0; no embeddings needed)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default auto)")
    return add_run_arguments(parser, "WORKSPACE/gan", "kimg")


def gan_config_from_args(args: argparse.Namespace) -> GanTrainConfig:
    """The config the arguments describe: ``--config`` file, then ``--set``, then the dedicated flags."""
    config = load_gan_train_config(args.config) if getattr(args, "config", None) else GanTrainConfig()
    res, preset = getattr(args, "res", None), getattr(args, "preset", None)
    if preset is None and res is not None and str(res) in PRESETS:
        preset = str(res)
    return resolve_config(config, getattr(args, "overrides", None) or [], {
        "res": res, "preset": preset, "batch": getattr(args, "batch", None), "kimg": getattr(args, "kimg", None),
        "device": getattr(args, "device", None),
        "unconditional": True if getattr(args, "unconditional", False) else None})


def run_train_gan_command(args: argparse.Namespace) -> int:
    """Run ``cxr-reid train-gan``; returns the exit code (0). CxrReidError subclasses carry user errors."""
    from gan.train import train_gan

    config = gan_config_from_args(args)
    return run_training(args, config, lambda: train_gan(
        args.workspace, config, resume=args.resume, progress=not args.quiet, stop_after_kimg=args.stop_after_kimg),
        lambda r: (f"{'finished' if r.finished else 'paused (re-run to resume)'} at {r.kimg:.3f}/{r.total_kimg:g} "
                   f"kimg ({r.steps} steps); {r.s_per_kimg:.2f} s/kimg; ADA p {r.augment_p:.3f}; "
                   f"generator in {r.gan_dir}"))
