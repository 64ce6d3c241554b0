"""Counterfactual figures for papers: PC × α grids, |Δ| maps, GIF sweeps and identity swaps as files.

:func:`write_figures` renders, for each workspace image id, into ``out/``::

    <id>_grid.png        rows PC1…PCk, columns the α values (σ units); encoded film, identity moved
    <id>_diff.png        |Δ| of every cell against its row's α = 0 cell (one shared scale, white = largest)
    <id>_pc<k>.gif       PC k swept from -3σ to +3σ
    <id>_swap_<other>.png   real film | reconstruction | rendered with <other>'s identity | real <other>

With an encoder-trained generator (``gan/E_ema``) the film is encoded once and
only its identity moves; otherwise the generator's seeded latent renders the
image's identity (no swaps). PNGs are upscaled by ``scale`` (nearest neighbour).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gan.counterfactual import CounterfactualRenderer, gif_bytes, grid_diff, mosaic, to_uint8
from gan.io import write_bytes_atomic
from reid_core.errors import CxrReidError


def _png(path: Path, image: np.ndarray, scale: int) -> Path:
    from io import BytesIO

    from PIL import Image

    arr = to_uint8(image)
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    buf = BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return write_bytes_atomic(path, buf.getvalue())


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80]


def write_figures(workspace: Path, image_ids: Sequence[str], out: Path, n_pcs: int = 5,
                  alphas: Sequence[float] = (-3.0, -1.5, 0.0, 1.5, 3.0), swap_with: Sequence[str] = (),
                  scale: int = 4, gif_frames: int = 24) -> list[Path]:
    """Write the figures of the module docstring; returns the paths written."""
    from gan.cae.evaluate import encode
    from gan.cae.io import has_encoder, load_encoder
    from gan.cae.report import load_films
    from gan.io import load_generator
    from gan.pca import PCA_FILE, load_or_fit_pca
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    ws = Workspace(workspace)
    G = load_generator(ws.gan_dir)
    table = EmbeddingTable.load(ws.embeddings_path)
    pca = load_or_fit_pca(table.embeddings, ws.gan_dir / PCA_FILE, 16)
    if n_pcs > pca.n_components:
        raise CxrReidError(f"--pcs {n_pcs}: the identity PCA has {pca.n_components} components")
    E = load_encoder(ws.gan_dir) if has_encoder(ws.gan_dir) else None
    if swap_with and E is None:
        raise CxrReidError("identity swaps need a generator trained with its encoder (cxr-reid train-cae)")
    renderer = CounterfactualRenderer(G, pca, psi=1.0 if E is not None else 0.7)
    ids = list(dict.fromkeys(list(image_ids) + list(swap_with)))
    films, _ = load_films(ws.root, ids, G.img_resolution)
    conds = table.embeddings[table.rows_for(ids)].astype(np.float32)
    codes = encode(E, films) if E is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def draw(i: int, alphas_by_pc: dict[int, float] | None, c: np.ndarray | None = None) -> np.ndarray:
        c0 = conds[i] if c is None else c
        if codes is None:
            return renderer.render(c0, alphas_by_pc)
        return renderer.render_z(codes[i], c0, alphas_by_pc)

    for image_id in image_ids:
        i = ids.index(image_id)
        stem = _safe(image_id)
        grid = np.stack([np.stack([draw(i, {pc: float(a)}) for a in alphas]) for pc in range(n_pcs)])
        written.append(_png(out / f"{stem}_grid.png", mosaic(grid, pad=1), scale))
        diff = grid_diff(grid, alphas)
        written.append(_png(out / f"{stem}_diff.png", mosaic(diff / max(float(diff.max()), 1e-6), pad=1), scale))
        sweep = np.linspace(-3.0, 3.0, gif_frames)
        for pc in range(n_pcs):
            frames = np.stack([draw(i, {pc: float(a)}) for a in sweep])
            written.append(write_bytes_atomic(out / f"{stem}_pc{pc + 1}.gif", gif_bytes(frames, sweep / 3.0)))
        for other in swap_with:
            j = ids.index(other)
            if other == image_id:
                continue
            row = [films[i], draw(i, None), draw(i, None, conds[j]), films[j]]
            written.append(_png(out / f"{stem}_swap_{_safe(other)}.png",
                                mosaic(np.stack(row)[None], pad=1), scale))
    return written
