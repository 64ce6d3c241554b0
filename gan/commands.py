"""The generator's ``cxr-reid`` subcommands, registered through the ``cxr_reid.commands`` entry point.

``reid_core.cli`` never imports this package: it loads every entry point of
that group (``pyproject.toml`` names :func:`register`) and hands each an ``add``
function, so the dependency runs one way (``gan`` → ``reid_core``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from gan.cae import cli as cae_cli
from gan.cli import TRAIN_GAN_EXAMPLES, add_train_gan_arguments, run_train_gan_command

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str, str], argparse.ArgumentParser]


def _cmd_gan_evaluate(args: argparse.Namespace) -> int:
    from gan.io import load_generator
    from gan.metrics import evaluate_gan, write_metrics
    from reid_core.checkpoint import load_embedder
    from reid_core.data.manifest import load_manifest
    from reid_core.data.store import ImageStore
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    ws = Workspace(args.workspace)
    G = load_generator(ws.gan_dir)
    embedder = load_embedder(ws.embedder_dir)
    manifest = load_manifest(ws.manifest_path)
    table = EmbeddingTable.load(ws.embeddings_path)
    emb = table.embeddings[table.rows_for(manifest["image_id"])]
    store = ImageStore(ws.images_path(ws.default_image_size()), manifest)
    rows = manifest["cache_row"].to_numpy()
    # the memory-mapped store itself when manifest rows are store rows (only sampled rows get read)
    images = store.array if np.array_equal(rows, np.arange(len(store))) else store.array[rows]
    metrics = evaluate_gan(G, embedder, images, emb, manifest["patient_id"].to_numpy(), n=args.n, seed=args.seed,
                           psi=args.psi, max_real=args.max_real)
    path = write_metrics(ws.gan_dir, metrics)
    for key in ("top1_image", "top1_centroid", "chance_top1", "mean_distance", "frechet_distance"):
        print(f"{key:<18} {metrics.get(key)}")
    print(f"wrote {path}")
    return 0


def register(add: AddCommand) -> None:
    """Add the generator's subcommands through ``add(name, run, help, example)``."""
    add_train_gan_arguments(add(
        "train-gan", run_train_gan_command,
        "Train the identity-conditioned StyleGAN2-ADA on the workspace (resumable).", TRAIN_GAN_EXAMPLES))

    p = add("gan-evaluate", _cmd_gan_evaluate,
            "Identity preservation and embedder-space Fréchet distance of the trained GAN (gan/metrics.json).",
            "example: cxr-reid gan-evaluate --workspace ws/phantom --n 2000")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--n", type=int, default=1000, help="generated images (default 1000)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation (default 1: none)")
    p.add_argument("--max-real", type=int, default=5000, help="real images for the Fréchet statistics")
    p.add_argument("--seed", type=int, default=0)

    cae_cli.add_train_cae_arguments(add(
        "train-cae", cae_cli.run_train_cae_command,
        "Train the counterfactual generator as a conditional autoencoder (CPU-friendly; resumable).",
        cae_cli.TRAIN_CAE_EXAMPLE))
    cae_cli.add_cae_evaluate_arguments(add(
        "cae-evaluate", cae_cli.run_cae_evaluate_command,
        "Judge the autoencoder-trained generator on held-out patients with two recognisers (gan/metrics.json).",
        "example: cxr-reid cae-evaluate --workspace ws/phantom1500 --judge checkpoints/judge"))
    cae_cli.add_ship_gan_arguments(add(
        "ship-gan", cae_cli.run_ship_gan_command,
        "Export a judged autoencoder generator with its encoder and a model card (checkpoints/gan).",
        "example: cxr-reid ship-gan --workspace workspaces/phantom1500 --out checkpoints/gan"))
    cae_cli.add_counterfactuals_arguments(add(
        "counterfactuals", cae_cli.run_counterfactuals_command,
        "Write PC x alpha grids, |delta| maps, GIF sweeps and identity swaps of workspace images as PNG/GIF.",
        "example: cxr-reid counterfactuals --workspace workspaces/demo --images P00004_s00 "
        "--swap-with P00069_s01 --out figures/"))
