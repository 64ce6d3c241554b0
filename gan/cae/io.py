"""The autoencoder's checkpoint: the generator (as every generator) plus its nuisance encoder.

In a workspace's ``gan/`` folder::

    G_ema.safetensors + config.json     the generator, read by :func:`gan.io.load_generator`
                                        (meta ``objective: "autoencoder"``, ``encoder``: EncoderConfig)
    E_ema.safetensors + encoder.json    the nuisance encoder; its meta records the SHA-256 of the
                                        generator weights it was saved with

:func:`load_encoder` verifies both files and that the encoder belongs to the
generator next to it; every failure is a :class:`~reid_core.errors.CheckpointError`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gan.cae.encoder import EncoderConfig, NuisanceEncoder
from gan.config import GanConfig
from gan.io import G_NAME, META_NAME
from gan.networks import Generator
from reid_core import artefact_names as names
from reid_core.checkpoint import build_to_fit, load_checkpoint, save_checkpoint, weights_sha256
from reid_core.errors import CheckpointError

E_NAME = names.ENCODER_NAME
E_META_NAME = names.ENCODER_META
OBJECTIVE = "autoencoder"


def _generator_sha(gan_dir: Path) -> str | None:
    """The generator's weight hash as its record states it; None when there is no readable record."""
    try:
        return weights_sha256(gan_dir, meta_name=META_NAME)
    except CheckpointError:
        return None


def save_cae(gan_dir: str | Path, G_ema: Generator, E_ema: NuisanceEncoder, gan_cfg: GanConfig,
             enc_cfg: EncoderConfig, train_cfg: dict[str, Any], stats: dict[str, Any]) -> None:
    """Write the generator (``objective: autoencoder``) and then its encoder, each atomically."""
    gan_dir = Path(gan_dir)
    versions = {"torch": torch.__version__.split("+")[0]}
    meta = {"kind": "gan_generator", "objective": OBJECTIVE, "gan": gan_cfg.to_dict(), "train": dict(train_cfg),
            "c_dim": gan_cfg.c_dim, "encoder": enc_cfg.to_dict(), "stats": dict(stats), "versions": versions}
    save_checkpoint(gan_dir, G_ema.state_dict(), meta, G_NAME, meta_name=META_NAME)
    e_meta = {"kind": "nuisance_encoder", "encoder": enc_cfg.to_dict(), "generator_sha256": _generator_sha(gan_dir),
              "versions": versions}
    save_checkpoint(gan_dir, E_ema.state_dict(), e_meta, E_NAME, meta_name=E_META_NAME)


def has_encoder(gan_dir: str | Path) -> bool:
    """Whether ``gan_dir`` holds an encoder record (the generator was trained as an autoencoder)."""
    return (Path(gan_dir) / f"{E_META_NAME}.json").is_file()


def load_encoder(gan_dir: str | Path, map_location: str | torch.device = "cpu") -> NuisanceEncoder:
    """The verified encoder of ``gan_dir`` (eval mode, no grad); CheckpointError on any defect or mismatch."""
    gan_dir = Path(gan_dir)
    tensors, meta = load_checkpoint(gan_dir, E_NAME, meta_name=E_META_NAME)
    if meta.get("kind") != "nuisance_encoder" or not isinstance(meta.get("encoder"), dict):
        raise CheckpointError(f"{gan_dir / (E_META_NAME + '.json')}: not a nuisance-encoder record")
    try:
        cfg = EncoderConfig.from_dict(meta["encoder"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{gan_dir / (E_META_NAME + '.json')}: invalid encoder config: {exc}") from None
    E = build_to_fit(lambda: NuisanceEncoder(cfg), tensors, gan_dir / f"{E_META_NAME}.json",
                     gan_dir / f"{E_NAME}.safetensors", "nuisance encoder")
    expected = meta.get("generator_sha256")
    if expected is not None and expected != _generator_sha(gan_dir):
        raise CheckpointError(f"{gan_dir}: the encoder was saved with another generator than {G_NAME}.safetensors "
                              "(a partial copy or an interrupted save); copy or train the pair together")
    E.load_state_dict(tensors, strict=True)
    return E.requires_grad_(False).to(map_location).eval()
