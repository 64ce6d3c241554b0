"""``cxr-reid train-cae``, ``cae-evaluate`` and ``counterfactuals``: argument parsers and runners."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from reid_core.errors import CxrReidError
from reid_core.train.runner import add_run_arguments

log = logging.getLogger(__name__)

TRAIN_CAE_EXAMPLE = """examples:
  cxr-reid train-cae --workspace ws/phantom --kimg 300
  cxr-reid train-cae --workspace ws/phantom --stop-after-kimg 20     (time slices; run again to go on)
  cxr-reid train-cae --workspace ws/phantom --set arch.g_channel_base=4096 --set adv_weight=0"""


def add_train_cae_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workspace", required=True, type=Path,
                   help="workspace with prepared images, embedder/ and embeddings.npz")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option, e.g. kimg=100, id_weight=1, arch.n_dim=32 (repeatable)")
    p.add_argument("--kimg", type=float, help="training budget in thousands of images")
    return add_run_arguments(p, "WORKSPACE/gan", "kimg")


def run_train_cae_command(args: argparse.Namespace) -> int:
    from gan.cae.config import CaeTrainConfig
    from gan.cae.train import train_cae
    from reid_core.train.runner import resolve_config, run_training

    config = resolve_config(CaeTrainConfig(), args.overrides, {"kimg": args.kimg})
    return run_training(args, config, lambda: train_cae(
        args.workspace, config, resume=args.resume, progress=not args.quiet, stop_after_kimg=args.stop_after_kimg),
        lambda r: (f"autoencoder {'finished' if r.finished else 'stopped (run the same command to continue)'}: "
                   f"{r.kimg:.1f} of {config.kimg:g} kimg, {r.s_per_kimg:.1f} s/kimg → {r.gan_dir}"))


# --------------------------------------------------------------------------- evaluation

def add_cae_evaluate_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--judge", type=Path, default=Path("checkpoints/judge"),
                   help="the independent recogniser's checkpoint folder (default checkpoints/judge)")
    p.add_argument("--patients", type=int, default=100, help="held-out patients to judge (default 100)")
    p.add_argument("--split", default="test", help="split of the held-out patients (default test)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_cae_evaluate_command(args: argparse.Namespace) -> int:
    from gan.cae.report import evaluate_workspace_generator

    metrics, path = evaluate_workspace_generator(args.workspace, args.judge, args.patients, args.split, args.seed)
    for judge, figs in metrics["judges"].items():
        print(f"{judge}: " + ", ".join(f"{k} {v:.3f}" for k, v in figs.items()))
    g, b = metrics["realism"]["generated"], metrics["realism"]["real_baseline"]
    print(f"realism: KID×1000 {g['kid_x1000']:.2f} (real vs real {b['kid_x1000']:.2f}), C2ST AUC "
          f"{g['c2st_auc']:.3f} ({b['c2st_auc']:.3f})")
    pcm = metrics.get("pc_meaning", {})
    if pcm.get("table"):
        print(f"PC meaning: {pcm['agree']} of {len(pcm['table'])} PCs agree")
    elif pcm.get("skipped"):
        print(f"PC meaning: skipped ({pcm['skipped']})")
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- figures

def add_counterfactuals_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--images", required=True, nargs="+", metavar="IMAGE_ID", help="workspace image ids")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNG/GIF files")
    p.add_argument("--pcs", type=int, default=5, help="identity PCs in the grid and the GIFs (default 5)")
    p.add_argument("--alphas", default="-3,-1.5,0,1.5,3",
                   help="α values of the grid in σ, must include 0; write --alphas=-2,0,2 (a leading minus)")
    p.add_argument("--swap-with", nargs="*", default=[], metavar="IMAGE_ID",
                   help="render each image with these images' identities (encoder-trained generators)")
    p.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling of PNGs (default 4)")
    return p


def run_counterfactuals_command(args: argparse.Namespace) -> int:
    from gan.cae.figures import write_figures

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise CxrReidError(f"--alphas: expected comma-separated numbers, got {args.alphas!r}") from None
    if 0.0 not in alphas:
        raise CxrReidError("--alphas must include 0 (the |Δ| maps compare against it)")
    if args.pcs < 1 or args.scale < 1:
        raise CxrReidError("--pcs and --scale must be >= 1")
    written = write_figures(args.workspace, args.images, args.out, n_pcs=args.pcs, alphas=alphas,
                            swap_with=args.swap_with, scale=args.scale)
    for path in written:
        print(path)
    return 0


def add_ship_gan_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workspace", required=True, type=Path, help="workspace with a judged autoencoder generator")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder, e.g. checkpoints/gan")
    p.add_argument("--notes", default="", help="free text for the card's Notes section")
    p.add_argument("--notes-file", type=Path, help="the Notes section from a Markdown file")
    return p


def run_ship_gan_command(args: argparse.Namespace) -> int:
    from gan.cae.ship import ship_generator

    notes = args.notes
    if args.notes_file is not None:
        try:
            notes = args.notes_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CxrReidError(f"--notes-file: {exc}") from None
    out = ship_generator(args.workspace, args.out, notes)
    print(f"wrote {out} (generator + encoder + metrics.json + MODEL_CARD.md)")
    return 0
