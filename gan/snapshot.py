"""What a GAN run leaves for its users: ``G_ema`` checkpoints and ``samples.png`` grids.

* :func:`save_generator`: ``gan/G_ema.safetensors`` + ``gan/config.json``
  through :func:`reid_core.checkpoint.save_checkpoint` (atomic, hashed). The
  JSON ``meta`` holds ``kind``, the architecture (``gan``:
  :class:`~gan.config.GanConfig`), the training options (``train``:
  :class:`~gan.train_config.GanTrainConfig`), ``c_dim`` and training ``stats``;
  :func:`gan.io.load_generator` rebuilds the generator from it (no code in the file).
* :class:`SnapshotGrid`: fixed inputs for progress pictures. Conditional: row
  ``i`` shows real image ``i`` (column 0) and then G(z_j, c_i) for the fixed
  latents z_1…z_{cols-1}, one per column, so rows compare identities and
  columns compare latents. Unconditional: ``rows × cols`` samples. The noise is
  the generator's constant noise, so the same weights give the same picture.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gan.config import GanConfig
from gan.data import GanData, to_model_images
from gan.io import G_NAME, META_NAME, write_bytes_atomic
from gan.networks import Generator
from reid_core.checkpoint import CheckpointFiles, save_checkpoint

SAMPLES_NAME = "samples.png"
_GRID_SALT = 0x5A3


def save_generator(gan_dir: str | Path, G_ema: Generator, gan_cfg: GanConfig, train_cfg: dict[str, Any],
                   stats: dict[str, Any]) -> CheckpointFiles:
    """Atomically write ``G_ema.safetensors`` + ``config.json`` into ``gan_dir``."""
    meta = {"kind": "gan_generator", "gan": gan_cfg.to_dict(), "train": dict(train_cfg), "c_dim": gan_cfg.c_dim,
            "stats": dict(stats), "versions": {"torch": torch.__version__.split("+")[0]}}
    return save_checkpoint(gan_dir, G_ema.state_dict(), meta, G_NAME, meta_name=META_NAME)


@dataclass
class SnapshotGrid:
    """Fixed latents, conditions and (conditional only) the real images they come from."""

    z: Tensor  # (rows·cols or cols-1, z_dim)
    c: Tensor  # (rows, c_dim)
    reals: Tensor | None  # (rows, 1, R, R) in [-1, 1]; None when unconditional
    rows: int
    cols: int

    @classmethod
    def build(cls, data: GanData, gan_cfg: GanConfig, rows: int, cols: int, seed: int,
              device: torch.device | str = "cpu") -> SnapshotGrid:
        """Inputs drawn from ``seed`` alone: every snapshot of a run shows the same identities and latents."""
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, _GRID_SALT]).generate_state(1)[0]))
        rng = np.random.default_rng([seed, _GRID_SALT])
        if data.c_dim == 0:
            z = torch.randn(rows * cols, gan_cfg.z_dim, generator=gen)
            return cls(z.to(device), torch.zeros(rows, 0, device=device), None, rows, cols)
        cols = max(cols, 2)
        rows = min(rows, len(data))
        picks = np.sort(rng.choice(len(data), rows, replace=False))
        store = np.load(data.store_path, mmap_mode="r")
        images = torch.from_numpy(np.asarray(store[data.rows[picks]]))
        reals = to_model_images(images, torch.device(device), data.resolution, channels_last=False)
        z = torch.randn(cols - 1, gan_cfg.z_dim, generator=gen)
        c = torch.from_numpy(data.conditions[picks])
        return cls(z.to(device), c.to(device), reals, rows, cols)

    @torch.no_grad()
    def render(self, G: Generator) -> np.ndarray:
        """The grid as one uint8 (rows·R, cols·R) image."""
        device = next(G.parameters()).device
        z, c = self.z.to(device), self.c.to(device)
        lines = []
        for i in range(self.rows):
            if self.reals is None:
                zi, ci, first = z[i * self.cols:(i + 1) * self.cols], c[[i] * self.cols], []
            else:
                zi, ci, first = z, c[i:i + 1].expand(len(z), -1), [self.reals[i:i + 1].to(device)]
            fakes = G(zi, ci, noise_mode="const").float()
            lines.append(torch.cat([*first, fakes], dim=0))
        return tile_grid(torch.stack(lines))


def tile_grid(images: Tensor) -> np.ndarray:
    """(rows, cols, 1, R, R) in [-1, 1] → uint8 (rows·R, cols·R)."""
    rows, cols, _, h, w = images.shape
    x = ((images[:, :, 0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return x.permute(0, 2, 1, 3).reshape(rows * h, cols * w).numpy()


def save_png_atomic(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 grayscale image as PNG, atomically (:func:`gan.io.write_bytes_atomic`)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype}{image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())
