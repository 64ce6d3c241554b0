"""The counterfactual page's library: open a workspace's GAN, render slider states, grids, GIFs, PC meanings.

A :class:`Subject` is what the sliders move: the identity embedding ``c0`` of a
workspace image (rendered with the seed's latent and the truncation ψ), or an
uploaded image inverted into the generator (its own latent ``ws``; seed and ψ do
not apply). :func:`render_view` renders the base (all α = 0) and the
counterfactual and times the counterfactual render: the slider → image latency
the page shows. Nothing here imports streamlit; the page caches what these return.
"""
from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from gan.counterfactual import (
    CounterfactualRenderer,
    diff_map,
    gif_bytes,
    mosaic,
    to_uint8,
)
from gan.pca import IdentityPCA
from reid_core.errors import WorkspaceError
from reid_core.ui.overlay import heat_overlay, normalise
from reid_core.workspace import Workspace

if TYPE_CHECKING:
    from gan.cae.encoder import NuisanceEncoder
    from gan.networks import Generator
    from reid_core.model import Embedder

MAX_SIGMA = 3.0
SLIDER_STEP = 0.1
MAX_SLIDERS = 6
N_COMPONENTS = 16
GRID_ALPHAS: tuple[float, ...] = (-3.0, -1.5, 0.0, 1.5, 3.0)
GIF_FRAMES = 24
FACTORS_FILE = "phantom_factors.parquet"


# ---------------------------------------------------------------------------- models
def open_generator_and_pca(ws: Workspace, n_components: int = N_COMPONENTS) -> tuple[Generator, IdentityPCA]:
    """The workspace's generator and the identity PCA of its embeddings (``gan/pca.npz``, refitted when stale).

    :class:`WorkspaceError` when the generator's condition size and the embeddings' dimension differ.
    """
    from gan.io import load_generator
    from gan.pca import PCA_FILE, load_or_fit_pca
    from reid_core.embed import EmbeddingTable

    G = load_generator(ws.gan_dir)
    emb = EmbeddingTable.load(ws.embeddings_path).embeddings
    if G.c_dim == 0:
        raise WorkspaceError("the generator is unconditional (trained with --unconditional): identity "
                             "counterfactuals need one conditioned on the embeddings; re-run "
                             f"`cxr-reid train-gan --workspace {ws.root}` without --unconditional")
    if emb.shape[1] != G.c_dim:
        raise WorkspaceError(f"the generator is conditioned on {G.c_dim}-d embeddings but embeddings.npz holds "
                             f"{emb.shape[1]}-d ones (the embedder changed?): re-run "
                             f"`cxr-reid train-gan --workspace {ws.root}`")
    return G, load_or_fit_pca(emb, ws.gan_dir / PCA_FILE, n_components)


def make_renderer(G: Generator, pca: IdentityPCA, seed: int, psi: float) -> CounterfactualRenderer:
    """A renderer with latent ``z`` drawn from ``seed`` and truncation ``psi`` toward the condition's mean."""
    return CounterfactualRenderer(G, pca, z_seed=int(seed), psi=float(psi))


# ---------------------------------------------------------------------------- subjects
@dataclass(frozen=True)
class Subject:
    """``c0`` (c_dim,), an inverted latent ``ws`` (1×num_ws×w_dim) or an encoded nuisance code ``z`` (z_dim,)
    (at most one of the two), the real image for display."""

    c0: np.ndarray
    ws: np.ndarray | None = None
    real: np.ndarray | None = None
    label: str = ""
    z: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ws is not None and self.z is not None:
            raise ValueError("a subject has an inverted latent ws or an encoded code z, not both")

    @property
    def inverted(self) -> bool:
        return self.ws is not None

    @property
    def encoded(self) -> bool:
        return self.z is not None

    def with_identity(self, c: np.ndarray, label: str) -> Subject:
        """The same film (code ``z``) with another identity ``c``: an identity swap (encoded subjects only)."""
        if self.z is None:
            raise ValueError("an identity swap needs an encoded subject (a generator trained with its encoder)")
        return Subject(c0=np.asarray(c, dtype=np.float32), real=None, label=label, z=self.z)

    def render(self, renderer: CounterfactualRenderer, alphas: dict[int, float] | None = None) -> np.ndarray:
        """H×W image in [0, 1] moved by ``alphas`` ({pc: α in σ}); the base image when empty/None."""
        if self.z is not None:
            return renderer.render_z(self.z, self.c0, alphas or None)
        if self.ws is None:
            return renderer.render(self.c0, alphas or None)
        return renderer.render_ws(torch.from_numpy(self.ws), self.c0, alphas or None)


@dataclass(frozen=True)
class InvertedImage:
    """An upload inverted into the generator: the subject, its reconstruction and the target it matched."""

    subject: Subject
    reconstruction: np.ndarray
    target: np.ndarray
    pixel_loss: float
    steps: int
    seconds: float


def invert_image(G: Generator, embedder: Embedder, image: np.ndarray, steps: int = 100,
                 seed: int = 0) -> InvertedImage:
    """Invert a uint8 (or [0, 1]) image: condition = its embedding, W+ latent fitted by :func:`gan.invert.invert`."""
    from gan.invert import invert

    x = np.asarray(image, dtype=np.float32) / (255.0 if np.asarray(image).dtype == np.uint8 else 1.0)
    t0 = time.perf_counter()
    res = invert(G, embedder, x, steps=int(steps), seed=seed)
    subject = Subject(c0=res.c[0].cpu().numpy().astype(np.float32), ws=res.ws.cpu().numpy(), real=res.target,
                      label="uploaded image (inverted)")
    return InvertedImage(subject, res.image, res.target, float(res.losses["pixel"][-1]), int(steps),
                         time.perf_counter() - t0)


def open_encoder(ws: Workspace) -> NuisanceEncoder | None:
    """The generator's nuisance encoder when it was trained as an autoencoder (``gan/E_ema``), else None."""
    from gan.cae.io import has_encoder, load_encoder

    return load_encoder(ws.gan_dir) if has_encoder(ws.gan_dir) else None


@dataclass(frozen=True)
class EncodedImage:
    """A film encoded for counterfactuals: the subject (``c0`` from the embedder, ``z`` from the encoder),
    its reconstruction, the film at the generator's resolution and the seconds encoding + first render took."""

    subject: Subject
    reconstruction: np.ndarray
    target: np.ndarray
    seconds: float


def encode_image(G: Generator, encoder: NuisanceEncoder, embedder: Embedder | None, image: np.ndarray,
                 c0: np.ndarray | None = None, label: str = "") -> EncodedImage:
    """Encode a uint8 (or [0, 1]) film: identity ``c0`` (given, or the embedder's), nuisance code = E's mean.

    One embedder pass, one encoder pass and one generator pass: the first counterfactual
    (the reconstruction, α = 0) is ready when this returns.
    """
    from gan.io import resize

    arr = np.asarray(image)
    x = torch.from_numpy(arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0))[None, None]
    t0 = time.perf_counter()
    with torch.inference_mode():
        if c0 is None:
            if embedder is None:
                raise ValueError("encode_image needs c0 or an embedder")
            c0 = embedder.embed(resize(x, int(embedder.config.image_size)))[0].numpy()
        xg = resize(x, G.img_resolution)
        mu, _ = encoder(xg * 2.0 - 1.0)
        z = mu[0].numpy().astype(np.float32)
        c0 = np.asarray(c0, dtype=np.float32).reshape(-1)
        ws = G.mapping(torch.from_numpy(z)[None], torch.from_numpy(c0)[None], truncation_psi=1.0)
        rec = (G.synthesis(ws, noise_mode="const")[0, 0] * 0.5 + 0.5).clamp(0, 1).numpy().astype(np.float32)
    subject = Subject(c0=c0, real=xg[0, 0].numpy(), label=label, z=z)
    return EncodedImage(subject, rec, xg[0, 0].numpy(), time.perf_counter() - t0)


# ---------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class CounterfactualView:
    """Base (α = 0), counterfactual, |Δ| and its colour overlay; ``render_ms`` times the counterfactual."""

    base: np.ndarray
    image: np.ndarray
    diff: np.ndarray
    overlay: np.ndarray
    render_ms: float

    @property
    def max_diff(self) -> float:
        return float(self.diff.max()) if self.diff.size else 0.0


def active_alphas(values: Sequence[float]) -> dict[int, float]:
    """Slider values (PC1 first) → ``{pc index: α}`` for the non-zero ones."""
    return {k: float(a) for k, a in enumerate(values) if float(a) != 0.0}


def render_view(renderer: CounterfactualRenderer, subject: Subject, alphas: dict[int, float],
                base: np.ndarray | None = None) -> CounterfactualView:
    """Render the counterfactual of ``subject`` (timed, in ms) and compare it with ``base`` (rendered when None:
    pass a cached one so that a slider move costs a single render)."""
    base = subject.render(renderer, None) if base is None else np.asarray(base, dtype=np.float32)
    t0 = time.perf_counter()
    image = subject.render(renderer, alphas)
    ms = (time.perf_counter() - t0) * 1000.0
    diff = diff_map(image, base)
    return CounterfactualView(base, image, diff, heat_overlay(image, normalise(diff)), ms)


def alpha_grid(renderer: CounterfactualRenderer, subject: Subject, pcs: Sequence[int],
               alphas: Sequence[float] = GRID_ALPHAS) -> np.ndarray:
    """(len(pcs), len(alphas), H, W): row ``i`` moves PC ``pcs[i]`` alone through ``alphas``."""
    return np.stack([np.stack([subject.render(renderer, {int(pc): float(a)}) for a in alphas]) for pc in pcs])


def grid_image(grid: np.ndarray) -> np.ndarray:
    """The grid tiled into one image with a white pixel between cells."""
    return mosaic(grid, pad=max(1, grid.shape[-1] // 32))


def sweep_gif(renderer: CounterfactualRenderer, subject: Subject, pc: int, n_frames: int = GIF_FRAMES,
              max_sigma: float = MAX_SIGMA) -> bytes:
    """Looping GIF of PC ``pc`` swept from -max_sigma to +max_sigma (a strip under each frame marks α)."""
    alphas = np.linspace(-max_sigma, max_sigma, n_frames)
    frames = np.stack([subject.render(renderer, {int(pc): float(a)}) for a in alphas])
    return gif_bytes(frames, alphas / max_sigma)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a [0, 1] float or uint8 image (gray H×W or RGB H×W×3)."""
    from PIL import Image

    arr = np.asarray(image)
    arr = arr if arr.dtype == np.uint8 else to_uint8(arr)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def pc_labels(pca: IdentityPCA, n: int) -> list[str]:
    """Slider labels: ``PC1 · 23.4% of the variance``."""
    return [f"PC{k + 1} · {100 * float(pca.explained_variance_ratio[k]):.1f}% of the variance" for k in range(n)]


# ---------------------------------------------------------------------------- what the PCs mean
@dataclass(frozen=True)
class Factors:
    """Ground-truth factors per image (None when the workspace has none) and where they came from / why not."""

    table: pd.DataFrame | None
    note: str


def workspace_factors(ws: Workspace, manifest: pd.DataFrame) -> Factors:
    """The phantom's ground truth for the workspace's images, when it can be had.

    Looked for in order: ``phantom_factors.parquet`` in the workspace, the same file in
    the dataset root the workspace was prepared from (``cxr-reid phantom`` writes it),
    and for a workspace prepared straight from the phantom (``dataset: phantom``, with
    ``phantom_patient`` in the manifest) recomputed from the generator's seed.
    """
    try:
        info = ws.info()
    except WorkspaceError:
        info = {}
    candidates = [ws.root / FACTORS_FILE]
    if info.get("root"):
        candidates.append(Path(info["root"]) / FACTORS_FILE)
    for path in candidates:
        if path.is_file():
            try:
                return Factors(pd.read_parquet(path), f"ground truth from `{path}`")
            except (OSError, ValueError) as exc:
                return Factors(None, f"`{path}` is unreadable ({exc})")
    if info.get("dataset") == "phantom" and "phantom_patient" in manifest.columns:
        from reid_core.data.phantom import PhantomGenerator

        opts = info.get("options") or {}
        seed, difficulty = int(opts.get("seed", 0)), str(opts.get("difficulty", "standard"))
        patients = sorted(int(p) for p in manifest["phantom_patient"].dropna().unique())
        return Factors(PhantomGenerator(seed=seed, difficulty=difficulty).factors_table(patients),  # type: ignore[arg-type]
                       f"ground truth recomputed from the {difficulty} phantom generator (seed {seed})")
    return Factors(None, "this workspace is not a phantom dataset, so there is no ground-truth anatomy to "
                         "correlate the PCs with (a real dataset has no per-image factors)")


def pc_meaning(pca: IdentityPCA, embeddings: np.ndarray, image_ids: Sequence[str], factors: pd.DataFrame,
               n_pcs: int, top: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, r2)``: per PC its variance share and ``top`` factors by R²; and the full factors × PCs R².

    R² is that of the simple linear regression of each phantom factor on the PC score
    (:func:`gan.interpret.identity_pc_r2`) over the workspace's embedded images.
    """
    from gan.interpret import identity_pc_r2

    r2 = identity_pc_r2(pca, embeddings, image_ids, factors).iloc[:, :n_pcs]
    rows = []
    for k, col in enumerate(r2.columns):
        best = r2[col].dropna().sort_values(ascending=False).head(top)
        row = {"PC": col, "variance %": round(100 * float(pca.explained_variance_ratio[k]), 1)}
        for rank, (factor, value) in enumerate(best.items(), start=1):
            row[f"factor {rank}"] = f"{factor} (R² {value:.2f})"
        rows.append(row)
    return pd.DataFrame(rows), r2


# ---------------------------------------------------------------------------- how good the generator is
@dataclass(frozen=True)
class Quality:
    """The generator's judged figures as a table, and a note on what data they come from."""

    table: pd.DataFrame
    note: str


IDENTITY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("swap_top1_to_B", "identity swap: recognised as the new identity", "≥ 0.90"),
    ("swap_top1_to_A", "identity swap: still recognised as the film's own patient", "≤ 0.05"),
    ("reconstruction_top1", "reconstruction: recognised as its patient", "≥ 0.95"),
    ("sampled_nuisance_top1", "sampled nuisance: recognised as the identity's patient", "≥ 0.90"),
    ("real_top1", "real films (the recogniser's ceiling)", ""),
)


def quality_table(ws: Workspace) -> Quality | None:
    """The autoencoder figures of ``gan/metrics.json`` (``cxr-reid cae-evaluate``), or None when absent."""
    import json

    path = ws.gan_metrics_path
    try:
        metrics = json.loads(path.read_text(encoding="utf-8")).get("autoencoder")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("judges"), dict):
        return None
    judges = list(metrics["judges"])
    rows = []
    for key, label, goal in IDENTITY_ROWS:
        row = {"figure (top-1 among held-out patients)": label, "goal": goal}
        for j in judges:
            value = metrics["judges"][j].get(key)
            row[j] = None if value is None else round(float(value), 3)
        rows.append(row)
    rec, real = metrics.get("reconstruction", {}), metrics.get("realism", {})
    extra = [f"reconstruction PSNR {rec.get('psnr_db', float('nan')):.1f} dB, SSIM {rec.get('ssim', float('nan')):.3f}"]
    gen, base = real.get("generated", {}), real.get("real_baseline", {})
    if gen:
        extra.append(f"realism ({real.get('judge')}, {real.get('n_per_set')} per set): C2ST AUC "
                     f"{gen.get('c2st_auc', float('nan')):.2f} (real vs real {base.get('c2st_auc', float('nan')):.2f}, "
                     f"goal ≤ 0.80), KID×1000 {gen.get('kid_x1000', float('nan')):.1f} "
                     f"({base.get('kid_x1000', float('nan')):.1f}), precision {gen.get('precision', float('nan')):.2f} "
                     f"/ recall {gen.get('recall', float('nan')):.2f}")
    pcm = metrics.get("pc_meaning")
    if isinstance(pcm, dict) and pcm.get("table"):
        extra.append(f"PC meaning: for {pcm.get('agree')} of {len(pcm.get('table', []))} top PCs the factor a sweep "
                     "moves most is the one the PC correlates with on real films (goal ≥ 4 of 5)")
    note = (f"{metrics.get('n_patients')} held-out patients ({metrics.get('split')} split, never seen by the "
            f"generator), {metrics.get('n_films')} films at {metrics.get('resolution')} px; judged by the "
            f"conditioning embedder and an independent recogniser ({metrics.get('judge_backbone')}, never in any "
            "generator loss). " + "; ".join(extra) + ".")
    return Quality(pd.DataFrame(rows), note)
