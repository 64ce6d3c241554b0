"""Generator checkpoints, pixel-range conversion and atomic file writes for ``gan/``.

Checkpoint layout (written by ``gan.train`` through
:func:`gan.snapshot.save_generator`) in the workspace's ``gan/`` folder::

    G_ema.safetensors   the EMA generator's state dict (tensors only)
    config.json         {"format", "weights": {…sha256…}, "meta": {"kind": "gan_generator",
                         "gan": GanConfig.to_dict(), "train": {…}, "c_dim": …, "stats": {…}}}

:func:`load_generator` rebuilds the :class:`~gan.networks.Generator` from
``meta["gan"]`` (``meta["gan_config"]`` is accepted too) and loads the verified
weights strictly. Every way this can fail (missing/truncated/tampered files, no
or invalid architecture, ``c_dim`` contradicting it, keys or shapes that do not
fit) raises :class:`~reid_core.errors.CheckpointError` naming the cause. It
imports nothing from the training stack, so the app can load a generator
without ``reid_core.train``.

Pixel ranges: the generator's output is linear, roughly in [-1, 1];
:func:`to_unit` maps it to [0, 1] (clamped) for display and for the embedder,
:func:`to_signed` maps [0, 1] images back.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gan.config import GanConfig, build_generator
from gan.networks import Generator
from reid_core import artefact_names as names
from reid_core import atomic
from reid_core.checkpoint import build_to_fit, load_checkpoint, read_checkpoint_meta
from reid_core.errors import CheckpointError

log = logging.getLogger(__name__)

G_NAME = names.GENERATOR_NAME
"""Stem of the generator's weights file in the workspace's ``gan/`` folder."""
META_NAME = names.GENERATOR_META
"""Stem of the JSON record next to it."""
CONFIG_KEYS = GanConfig.RECORD_KEYS
"""Where the architecture may sit in the meta, in order of preference (``gan`` is what gan.train writes)."""


def _config_from_meta(meta: dict[str, Any], where: Path) -> GanConfig:
    key = next((k for k in CONFIG_KEYS if k in meta), None)
    raw = meta.get(key) if key else None
    if not isinstance(raw, dict):
        found = "missing" if key is None else f"a {type(raw).__name__}"
        raise CheckpointError(f"{where}: no GAN architecture (meta['gan'] / meta['gan_config'] {found}); "
                              "not a generator written by gan.train?")
    try:
        cfg = GanConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid meta[{key!r}]: {exc}") from None
    c_dim = meta.get("c_dim", cfg.c_dim)
    if c_dim != cfg.c_dim:
        raise CheckpointError(f"{where}: meta['c_dim'] = {c_dim!r} contradicts the architecture's c_dim = {cfg.c_dim}")
    return cfg


def load_generator(gan_dir: str | Path, map_location: str | torch.device = "cpu") -> Generator:
    """The generator saved in ``gan_dir`` (verified, strict), in eval mode with ``requires_grad=False``."""
    gan_dir = Path(gan_dir)
    tensors, meta = load_checkpoint(gan_dir, G_NAME, meta_name=META_NAME)
    cfg = _config_from_meta(meta, gan_dir / f"{META_NAME}.json")
    G = build_to_fit(lambda: build_generator(cfg), tensors, gan_dir / f"{META_NAME}.json",
                     gan_dir / f"{G_NAME}.safetensors", "generator")
    G.load_state_dict(tensors, strict=True)
    G.requires_grad_(False)
    log.debug("loaded generator %s (%d px, c_dim %d)", gan_dir, cfg.resolution, cfg.c_dim)
    return G.to(map_location).eval()


def load_gan_config(gan_dir: str | Path) -> GanConfig:
    """The :class:`GanConfig` recorded with the generator (weights are not read)."""
    gan_dir = Path(gan_dir)
    return _config_from_meta(read_checkpoint_meta(gan_dir, meta_name=META_NAME), gan_dir / f"{META_NAME}.json")


# --------------------------------------------------------------------------- pixel ranges

def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Generator output (≈[-1, 1]) → [0, 1], clamped."""
    return (x * 0.5 + 0.5).clamp(0.0, 1.0)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images → the generator's [-1, 1] range."""
    return x * 2.0 - 1.0


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square bilinear resize of B×C×H×W (antialiased when shrinking); ``x`` itself when already ``size``."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < max(x.shape[-2:]))


# --------------------------------------------------------------------------- atomic writes

def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a hidden temp file in the same folder, fsync, then ``os.replace`` it over ``path``."""
    return atomic.write_bytes_atomic(path, data)


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Strict JSON (NaN/inf rejected: clean them first), indented and sorted, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
