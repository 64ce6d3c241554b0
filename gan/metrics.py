"""How well a conditional generator keeps identity, and how close its images are to real ones.

:func:`evaluate_gan` draws ``n`` conditions (real images' embeddings, uniformly
with a seeded RNG), generates one image per condition (``z`` and random noise
drawn from the seed, ``psi`` = 1 by default: the full distribution),
embeds it with the workspace embedder and reports:

* ``top1_image`` — the generated image's nearest *training image* (cosine) belongs
  to the conditioning patient: the 1-NN re-identification the retrieval index does;
  the conditioning image itself is in that gallery, so a generator that copies
  its training image scores 1 here;
* ``top1_centroid`` — its nearest *patient centroid* (mean embedding of the
  patient's images, L2-normalised; cosine) is the conditioning patient: one
  near-duplicate image cannot win it, the patient's whole set has to agree;
* ``mean_distance`` — mean Euclidean distance between the generated image's
  embedding and its conditioning embedding, next to the same-patient and
  other-patient mean distances among the real embeddings for scale, and
  ``real_resolution_distance``: how far real images' embeddings move when they go
  through the generator-resolution pipeline below (the part of ``mean_distance``
  that resolution alone explains);
* ``frechet_distance`` — the Fréchet distance between Gaussian fits of the
  embedder's pooled features (:meth:`Embedder.features`) of real and generated
  images (an FID computed with the identity embedder instead of Inception). Like
  FID it is biased upward at small sample sizes: compare values computed with the
  same ``n`` and feature dimension (``feature_dim`` in the result).

Resolution pipeline: real images are brought to the generator's resolution
(antialiased) and both sets are fed to the embedder at ``embed_size`` (default
its training size), so the two sets go through identical resizing.
"""
from __future__ import annotations

from reid_core import artefact_names as names
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import torch

from gan.io import resize, to_unit, write_json_atomic
from reid_core.jsonfile import json_safe

if TYPE_CHECKING:
    from reid_core.model import Embedder

log = logging.getLogger(__name__)

METRICS_FILE = names.RUN_METRICS


# --------------------------------------------------------------------------- Fréchet distance

def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D×D) of N×D features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need N×D features with N ≥ 2, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((Σ1 Σ2)^½)`` as ``Σ √λ_i`` of the symmetric PSD matrix ``Σ1^½ Σ2 Σ1^½`` (same eigenvalues as Σ1 Σ2).

    Equal to ``trace(scipy.linalg.sqrtm(Σ1 @ Σ2))`` but computed with symmetric
    eigensolvers: real by construction (no imaginary rounding residue to discard),
    well defined for singular covariances (fewer samples than features), and about
    ten times faster than ``sqrtm`` at 512 features. Eigenvalues that rounding makes
    slightly negative are clipped to 0.
    """
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2.0)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``‖μ1-μ2‖² + tr(Σ1) + tr(Σ2) - 2 tr((Σ1 Σ2)^½)`` between two Gaussians, clipped at 0.

    The cross term uses :func:`trace_sqrt_product` (float64 throughout).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all() and np.isfinite(s1).all() and np.isfinite(s2).all()):
        raise ValueError("Fréchet distance of non-finite statistics")
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(fd, 0.0)


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two N×D feature sets."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


# --------------------------------------------------------------------------- identity preservation

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def identity_preservation(generated: np.ndarray, conditions: np.ndarray, cond_patients: np.ndarray,
                          ref_embeddings: np.ndarray, ref_patients: np.ndarray) -> dict[str, float]:
    """Top-1 rates (nearest image / nearest centroid, cosine) and distances; see module docstring."""
    gen, ref = np.asarray(generated, np.float64), np.asarray(ref_embeddings, np.float64)
    cond_patients, ref_patients = np.asarray(cond_patients).astype(str), np.asarray(ref_patients).astype(str)
    if len(gen) != len(cond_patients) or len(gen) != len(conditions) or len(ref) != len(ref_patients):
        raise ValueError("generated/conditions/cond_patients and ref_embeddings/ref_patients must align")
    sims = _unit(gen) @ _unit(ref).T
    top1_image = float(np.mean(ref_patients[sims.argmax(axis=1)] == cond_patients))
    patients, inverse = np.unique(ref_patients, return_inverse=True)
    centroids = np.zeros((len(patients), ref.shape[1]))
    np.add.at(centroids, inverse, _unit(ref))
    top1_centroid = float(np.mean(patients[(_unit(gen) @ _unit(centroids).T).argmax(axis=1)] == cond_patients))
    dist = np.linalg.norm(gen - np.asarray(conditions, np.float64), axis=1)
    same, other = _real_distance_baselines(ref, ref_patients)
    return {"top1_image": top1_image, "top1_centroid": top1_centroid, "mean_distance": float(dist.mean()),
            "real_same_patient_distance": same, "real_other_patient_distance": other,
            "chance_top1": 1.0 / len(patients)}


def _real_distance_baselines(ref: np.ndarray, patients: np.ndarray, max_n: int = 2000,
                             seed: int = 0) -> tuple[float, float]:
    """Mean Euclidean distance between real embeddings of the same / of different patients (≤ max_n rows)."""
    if len(ref) > max_n:
        keep = np.random.default_rng(seed).choice(len(ref), max_n, replace=False)
        ref, patients = ref[keep], patients[keep]
    sq = (ref**2).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2.0 * ref @ ref.T, 0.0))
    eq = patients[:, None] == patients[None]
    same_mask = eq & ~np.eye(len(ref), dtype=bool)
    same = float(d[same_mask].mean()) if same_mask.any() else math.nan
    other = float(d[~eq].mean()) if (~eq).any() else math.nan
    return same, other


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def _embed_and_features(embedder: "Embedder", batches: Iterable[torch.Tensor], embed_size: int,
                        resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and pooled features of (B, 1, H, W) [0, 1] batches, resized to ``resolution`` first
    (real images → the generator's resolution) and then to ``embed_size``."""
    dev = next(embedder.parameters()).device
    embs, feats = [], []
    for x in batches:
        x = x.to(dev)
        if resolution is not None:
            x = resize(x, resolution)
        x = resize(x, embed_size).clamp(0.0, 1.0)
        embs.append(embedder.embed(x).cpu().numpy())
        feats.append(embedder.features(x).cpu().numpy())
    return np.concatenate(embs), np.concatenate(feats)


@torch.no_grad()
def generate_batches(G: torch.nn.Module, conditions: np.ndarray, seed: int = 0, psi: float = 1.0,
                     batch_size: int = 32, noise_mode: str = "random") -> Iterator[torch.Tensor]:
    """Images (B, 1, R, R) in [0, 1], one per condition row, batch by batch; ``z`` and random noise are drawn
    from ``seed`` (the global RNG is left untouched)."""
    gen = torch.Generator().manual_seed(int(seed))
    dev = next(iter(G.parameters()), torch.empty(0)).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(int(seed))
        for i in range(0, len(conditions), batch_size):
            c = torch.as_tensor(np.asarray(conditions[i:i + batch_size], np.float32)).to(dev)
            z = torch.randn(len(c), G.z_dim, generator=gen).to(dev)
            yield to_unit(G(z, c, truncation_psi=psi, noise_mode=noise_mode))


def _image_batches(images: np.ndarray, rows: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 1, H, W) float32 [0, 1] batches of ``images[rows]`` (uint8 or float; memory maps read lazily)."""
    for i in range(0, len(rows), batch_size):
        x = np.asarray(images[rows[i:i + batch_size]])
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        yield torch.from_numpy(x)[:, None]


def evaluate_gan(G: torch.nn.Module, embedder: "Embedder", real_images: np.ndarray, real_embeddings: np.ndarray,
                 patient_ids: np.ndarray, n: int = 1000, seed: int = 0, *, psi: float = 1.0,
                 embed_size: int | None = None, batch_size: int = 32, max_real: int = 5000) -> dict[str, Any]:
    """Identity preservation and Fréchet distance of ``G`` (see module docstring).

    ``real_images``: N×H×W in [0, 1] (float) or uint8; ``real_embeddings`` (N×D) and
    ``patient_ids`` (N,) align with them (a memory-mapped store works: only the rows
    used are read). ``n`` conditions are drawn with replacement when ``n`` exceeds N; the
    real side of the Fréchet distance uses at most ``max_real`` images (seeded subsample).
    Generated images are embedded batch by batch and never held all at once.
    """
    emb = np.asarray(real_embeddings, np.float32)
    pids = np.asarray(patient_ids).astype(str)
    if np.ndim(real_images) != 3 or len(real_images) != len(emb) or len(emb) != len(pids):
        raise ValueError(f"real_images {np.shape(real_images)}, real_embeddings {emb.shape}, patient_ids "
                         f"{pids.shape} must be N×H×W, N×D and N")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(emb), size=n, replace=n > len(emb))
    real_rows = np.sort(rng.choice(len(emb), size=min(len(emb), max_real), replace=False))
    size = int(embed_size or embedder.config.image_size)
    was_training = G.training
    G.eval()
    try:
        fake_emb, fake_feat = _embed_and_features(
            embedder, generate_batches(G, emb[idx], seed=seed, psi=psi, batch_size=batch_size), size)
    finally:
        G.train(was_training)
    real_emb, real_feat = _embed_and_features(embedder, _image_batches(real_images, real_rows, batch_size), size,
                                              resolution=int(G.img_resolution))
    result: dict[str, Any] = identity_preservation(fake_emb, emb[idx], pids[idx], emb, pids)
    if min(len(real_feat), len(fake_feat)) <= real_feat.shape[1]:
        log.warning("Fréchet distance from %d generated / %d real images in %d-d features is strongly biased; "
                    "use more images than features", len(fake_feat), len(real_feat), real_feat.shape[1])
    result["frechet_distance"] = frechet_distance_features(real_feat, fake_feat)
    result["feature_dim"] = int(real_feat.shape[1])
    # how far real images move by the generator-resolution round trip alone (scale for mean_distance)
    result["real_resolution_distance"] = float(np.linalg.norm(real_emb - emb[real_rows], axis=1).mean())
    result.update(n_generated=int(n), n_real=int(len(emb)), n_real_frechet=int(len(real_rows)),
                  n_patients=int(len(np.unique(pids))), seed=int(seed), psi=float(psi), embed_size=size,
                  resolution=int(G.img_resolution),
                  reference="nearest training image / nearest L2-normalised patient centroid, cosine")
    log.info("GAN metrics: top-1 image %.3f, centroid %.3f, distance %.3f, Fréchet %.4g", result["top1_image"],
             result["top1_centroid"], result["mean_distance"], result["frechet_distance"])
    return result


def write_metrics(gan_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Write ``gan/metrics.json`` atomically (NaN/inf stored as null)."""
    return write_json_atomic(Path(gan_dir) / METRICS_FILE, json_safe(metrics))
