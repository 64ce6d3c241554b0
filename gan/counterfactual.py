"""Identity counterfactuals: move a condition along the identity PCs and re-render with everything else fixed.

``render(c0, α)`` renders the condition ``c = c0 + Σ_k α_k σ_k v_k`` (α in units
of the PC's standard deviation σ_k, see :mod:`gan.pca`) with

* the same latent ``z`` (drawn once from ``z_seed``) and the same noise
  (``'const'``: the generator's fixed noise buffers; ``'random'``: maps drawn once
  from ``z_seed``; ``'none'``), so only the condition changes;
* truncation toward the *condition's* mean latent: ``w = w̄_c + ψ (w(z, c) - w̄_c)``
  where ``w̄_c`` averages ``mapping(z_i, c)`` over ``n_avg`` fixed latents
  (:class:`ConditionMeans`, cached per condition). Truncating toward the global
  ``w_avg`` would pull every condition toward the average patient and blur the
  identity the slider is meant to show; ψ = 0 renders the condition's "typical"
  image, the same for every ``z``.

``keep_norm`` (default) rescales ``c`` to ``‖c0‖``: the generator was trained on
L2-normalised embeddings, so the moved condition stays on that sphere. When
every α is 0 the condition *is* ``c0`` (no arithmetic), so α = 0 reproduces the
base image bit for bit. Each image is rendered alone (batch of 1), so grid cells,
GIF frames and slider renders of the same α are identical too.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gan.io import to_unit, write_bytes_atomic
from gan.networks import Generator
from gan.pca import IdentityPCA

log = logging.getLogger(__name__)

Alphas = dict[int, float] | np.ndarray | None
AVG_SEED = 0x5EED
"""Seed of the latents averaged into ``w̄_c``; independent of ``z_seed`` so ψ = 0 ignores ``z``."""


class ConditionMeans:
    """``c ↦ w̄_c``: the mean of ``mapping(z_i, c)`` over ``n`` fixed latents, LRU-cached per condition
    (keyed by the condition's float32 bytes; thread-safe)."""

    def __init__(self, G: Generator, n: int = 256, seed: int = AVG_SEED, max_cached: int = 256) -> None:
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        self.G, self.max_cached = G, int(max_cached)
        gen = torch.Generator().manual_seed(int(seed))
        self.z = torch.randn(n, G.z_dim, generator=gen) if G.z_dim > 0 else None
        self.n = n if G.z_dim > 0 else 1
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()  # one renderer may serve several app sessions (st.cache_resource)

    @torch.inference_mode()
    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        """``w̄_c`` (w_dim,) for one condition ``c`` (c_dim,) or (1, c_dim)."""
        c = c.detach().reshape(1, -1).float().cpu()
        key = c.numpy().tobytes()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        dev = next(self.G.parameters()).device
        z = None if self.z is None else self.z.to(dev)
        ws = self.G.mapping(z, c.to(dev).expand(self.n, -1), truncation_psi=1.0)
        w = ws[:, 0].mean(dim=0)
        with self._lock:
            w = self._cache.setdefault(key, w)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return w


class CounterfactualRenderer:
    """Renders identity counterfactuals of a trained generator (see module docstring).

    Puts ``G`` in eval mode with ``requires_grad=False``.
    """

    def __init__(self, G: Generator, pca: IdentityPCA, z_seed: int = 0, psi: float = 0.7,
                 noise_mode: Literal["const", "random", "none"] = "const", keep_norm: bool = True,
                 n_avg: int = 256) -> None:
        if pca.dim != G.c_dim:
            raise ValueError(f"PCA of {pca.dim}-d embeddings does not fit a generator with c_dim {G.c_dim}")
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        self.G = G.eval().requires_grad_(False)
        self.pca, self.psi, self.keep_norm = pca, float(psi), keep_norm
        self.device = next(G.parameters()).device
        gen = torch.Generator().manual_seed(int(z_seed))
        self.z = torch.randn(1, G.z_dim, generator=gen).to(self.device) if G.z_dim > 0 else None
        self.noise_mode = "const" if noise_mode == "random" else noise_mode
        self.noise = ([torch.randn(1, *s, generator=gen).to(self.device) for s in G.synthesis.noise_shapes()]
                      if noise_mode == "random" else None)
        self.means = ConditionMeans(G, n_avg)

    # ---- conditions and latents --------------------------------------------
    def _base(self, c0: np.ndarray | torch.Tensor) -> np.ndarray:
        c0 = (c0.detach().cpu().numpy() if isinstance(c0, torch.Tensor) else np.asarray(c0)).astype(np.float32)
        c0 = c0.reshape(-1)
        if c0.shape != (self.pca.dim,):
            raise ValueError(f"condition must have {self.pca.dim} values, got shape {c0.shape}")
        return c0

    def condition(self, c0: np.ndarray | torch.Tensor, alphas: Alphas = None) -> np.ndarray:
        """``c0 + Σ α_k σ_k v_k`` (rescaled to ‖c0‖ with ``keep_norm``); exactly ``c0`` when all α are 0."""
        c0 = self._base(c0)
        if alphas is None:
            return c0
        off = self.pca.offset(alphas)
        if not off.any():
            return c0
        c = c0 + off
        if self.keep_norm:
            c = c * np.float32(np.linalg.norm(c0) / max(np.linalg.norm(c), 1e-12))
        return c.astype(np.float32)

    @torch.inference_mode()
    def ws(self, c: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Truncated ``ws`` (1, num_ws, w_dim) of condition ``c`` with the fixed ``z``."""
        ct = torch.as_tensor(self._base(c)).reshape(1, -1)
        w_c = self.means(ct)
        if self.z is None:
            w = w_c[None]
        else:
            w = self.G.mapping(self.z, ct.to(self.device), truncation_psi=1.0)[:, 0]
            w = w_c.lerp(w, self.psi) if self.psi != 1.0 else w
        return w.unsqueeze(1).repeat(1, self.G.num_ws, 1)

    @torch.inference_mode()
    def synthesize(self, ws: torch.Tensor) -> np.ndarray:
        """``ws`` (1, num_ws, w_dim) → H×W float32 image in [0, 1] with the fixed noise."""
        img = self.G.synthesis(ws.to(self.device), noise_mode=self.noise_mode, noise=self.noise)
        return to_unit(img[0, 0]).cpu().numpy().astype(np.float32)

    # ---- rendering ---------------------------------------------------------
    def render(self, c0: np.ndarray | torch.Tensor, alphas: Alphas = None) -> np.ndarray:
        """The counterfactual of ``c0`` moved by ``alphas`` ({pc: α} or an array over PCs 0…), H×W in [0, 1]."""
        return self.synthesize(self.ws(self.condition(c0, alphas)))

    @torch.inference_mode()
    def render_z(self, z: np.ndarray | torch.Tensor, c0: np.ndarray | torch.Tensor, alphas: Alphas = None) -> np.ndarray:
        """Counterfactual of an *encoded* film: ``G(z, c0 moved by alphas)`` without truncation.

        ``z`` (z_dim,) is the film's nuisance code from an autoencoder's encoder
        (:mod:`gan.cae`); only the condition moves, so α = 0 gives the film's
        reconstruction, the same bits every time.
        """
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z)
        zt = zt.float().reshape(1, -1)
        if zt.shape[1] != self.G.z_dim:
            raise ValueError(f"code has {zt.shape[1]} values, the generator expects z_dim={self.G.z_dim}")
        c = torch.as_tensor(self.condition(c0, alphas)).reshape(1, -1)
        ws = self.G.mapping(zt.to(self.device), c.to(self.device), truncation_psi=1.0)
        return self.synthesize(ws)

    @torch.inference_mode()
    def render_ws(self, ws_base: torch.Tensor, c0: np.ndarray | torch.Tensor, alphas: Alphas = None) -> np.ndarray:
        """Counterfactual of an inverted image: ``ws_base + (w̄_c - w̄_c0)`` (exactly ``ws_base`` at α = 0).

        The condition only reaches the synthesis through the mapping, so an inverted
        ``ws`` (see :mod:`gan.invert`) is moved by the shift of the condition's mean latent.
        """
        c = self.condition(c0, alphas)
        ws = ws_base.detach().to(self.device)
        if not np.array_equal(c, self._base(c0)):
            base = torch.as_tensor(self._base(c0)).reshape(1, -1)
            ws = ws + (self.means(torch.as_tensor(c).reshape(1, -1)) - self.means(base))
        return self.synthesize(ws)

    def grid(self, c0: np.ndarray | torch.Tensor, pcs: list[int] | range,
             alphas: list[float] | np.ndarray) -> np.ndarray:
        """Images (len(pcs), len(alphas), H, W): row ``i`` moves PC ``pcs[i]`` alone through ``alphas``."""
        rows = [np.stack([self.render(c0, {int(pc): float(a)}) for a in alphas]) for pc in pcs]
        return np.stack(rows)

    def sweep(self, c0: np.ndarray | torch.Tensor, pc: int, n_frames: int = 24,
              max_sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        """``(alphas, frames)``: PC ``pc`` from -max_sigma to +max_sigma, frames (n_frames, H, W)."""
        if n_frames < 2:
            raise ValueError(f"n_frames must be ≥ 2, got {n_frames}")
        alphas = np.linspace(-max_sigma, max_sigma, n_frames)
        return alphas, np.stack([self.render(c0, {int(pc): float(a)}) for a in alphas])

    def sweep_gif(self, c0: np.ndarray | torch.Tensor, pc: int, path: str | Path, n_frames: int = 24,
                  max_sigma: float = 3.0, duration_ms: int = 80, min_size: int = 256) -> Path:
        """Animated GIF of :meth:`sweep` (looping, written atomically); a strip under each frame marks α."""
        alphas, frames = self.sweep(c0, pc, n_frames, max_sigma)
        data = gif_bytes(frames, alphas / max_sigma if max_sigma > 0 else None, duration_ms, min_size)
        log.debug("sweep GIF of PC %d: %d frames → %s", pc, n_frames, path)
        return write_bytes_atomic(path, data)


def open_renderer(workspace: str | Path, z_seed: int = 0, psi: float = 0.7, n_components: int = 16,
                  **kwargs: object) -> CounterfactualRenderer:
    """A renderer for a workspace: ``gan/G_ema`` + the identity PCA of ``embeddings.npz`` (``gan/pca.npz``,
    fitted on first use and refitted when the embeddings change)."""
    from gan.io import load_generator
    from gan.pca import PCA_FILE, load_or_fit_pca
    from reid_core.embed import EmbeddingTable
    from reid_core.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    G = load_generator(ws.gan_dir)
    pca = load_or_fit_pca(EmbeddingTable.load(ws.embeddings_path).embeddings, ws.gan_dir / PCA_FILE, n_components)
    return CounterfactualRenderer(G, pca, z_seed=z_seed, psi=psi, **kwargs)


# --------------------------------------------------------------------------- image helpers

def diff_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| (float32), e.g. a counterfactual against the α = 0 image."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return np.abs(a - b)


def grid_diff(grid: np.ndarray, alphas: list[float] | np.ndarray) -> np.ndarray:
    """|Δ| of every cell of :meth:`CounterfactualRenderer.grid` against its row's α = 0 cell."""
    zero = np.flatnonzero(np.asarray(alphas, dtype=np.float64) == 0.0)
    if zero.size == 0:
        raise ValueError("alphas must contain 0 to compare against the base image")
    return np.abs(grid - grid[:, zero[0]:zero[0] + 1]).astype(np.float32)


def mosaic(grid: np.ndarray, pad: int = 1, value: float = 1.0) -> np.ndarray:
    """Tile a (rows, cols, H, W) grid into one 2-D image with ``pad`` pixels of ``value`` between cells."""
    r, c, h, w = grid.shape
    out = np.full((r * h + (r - 1) * pad, c * w + (c - 1) * pad), value, dtype=np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = grid[i, j]
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float → uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def gif_bytes(frames: np.ndarray, positions: np.ndarray | None = None, duration_ms: int = 80,
              min_size: int = 256) -> bytes:
    """Encode (n, H, W) [0, 1] frames as a looping grayscale GIF, upscaled (nearest) to ≥ ``min_size``.

    ``positions`` in [-1, 1] (one per frame) draw a marker strip under each frame;
    it also keeps consecutive frames distinct (PIL merges identical frames).
    """
    from PIL import Image

    n, h, w = frames.shape
    scale = max(1, math.ceil(min_size / max(h, w)))
    images = []
    for i in range(n):
        f = to_uint8(frames[i])
        if scale > 1:
            f = np.repeat(np.repeat(f, scale, axis=0), scale, axis=1)
        if positions is not None:
            strip = np.zeros((max(4, f.shape[0] // 32), f.shape[1]), dtype=np.uint8)
            x = int(round((float(positions[i]) + 1) / 2 * (f.shape[1] - 1)))
            half = max(1, f.shape[1] // 64)
            strip[:, max(0, x - half):x + half + 1] = 255
            strip[:, f.shape[1] // 2] = np.maximum(strip[:, f.shape[1] // 2], 96)  # α = 0 tick
            f = np.vstack([f, strip])
        images.append(Image.fromarray(f, mode="L"))
    buf = BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(duration_ms),
                   loop=0, optimize=False)
    return buf.getvalue()
