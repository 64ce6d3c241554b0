"""Principal axes of the identity embeddings: the directions the counterfactual sliders move along.

Fitted once on the workspace's ``embeddings.npz`` and stored as plain arrays in
``gan/pca.npz`` (``mean``, ``components``, ``std``, ``explained_variance_ratio``,
``n_samples``, ``source_sha256``; loaded with ``allow_pickle=False``).

Conventions (those of scikit-learn's ``PCA``): ``components`` (K×D) are the
unit right-singular vectors of the centred data, ``std[k] = sqrt(var_k)`` with
the unbiased variance (``ddof=1``), and each component's sign is fixed so that
its largest-magnitude loading is positive (deterministic across refits).
``source_sha256`` fingerprints the embeddings the axes came from, so
:func:`load_or_fit_pca` refits when ``embeddings.npz`` changed.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan.io import write_bytes_atomic
from reid_core.errors import WorkspaceError

log = logging.getLogger(__name__)

PCA_FILE = "pca.npz"


def _fingerprint(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class IdentityPCA:
    """``mean`` (D,), ``components`` (K×D, orthonormal rows), ``std`` (K,) σ_k, ``explained_variance_ratio`` (K,)."""

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray
    explained_variance_ratio: np.ndarray
    n_samples: int
    source_sha256: str = ""

    def __post_init__(self) -> None:
        k, d = self.components.shape
        if self.mean.shape != (d,) or self.std.shape != (k,) or self.explained_variance_ratio.shape != (k,):
            raise ValueError(f"inconsistent PCA arrays: mean {self.mean.shape}, components {self.components.shape}, "
                             f"std {self.std.shape}, ratio {self.explained_variance_ratio.shape}")

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, embeddings: np.ndarray, n_components: int = 16) -> IdentityPCA:
        """Exact PCA (SVD in float64) of N×D ``embeddings``; K = min(n_components, N-1, D)."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need an N×D array with N ≥ 2, got shape {x.shape}")
        k = int(min(n_components, len(x) - 1, x.shape[1]))
        if k < 1:
            raise ValueError(f"n_components must be ≥ 1, got {n_components}")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = s**2 / (len(x) - 1)
        total = var.sum()
        vt = vt[:k]
        signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
        vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
        ratio = var[:k] / total if total > 0 else np.zeros(k)
        return cls(mean.astype(np.float32), vt.astype(np.float32), np.sqrt(var[:k]).astype(np.float32),
                   ratio.astype(np.float32), int(len(x)), _fingerprint(embeddings))

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """PC scores (N×K) of embeddings, in raw units (divide by ``std`` for σ units)."""
        return (np.asarray(embeddings, dtype=np.float32) - self.mean) @ self.components.T

    def offset(self, alphas: dict[int, float] | np.ndarray) -> np.ndarray:
        """``Σ_k α_k σ_k v_k`` (D,) for α in units of σ: a {pc: α} dict or an array over the first PCs."""
        coef = np.zeros(self.n_components, dtype=np.float64)
        if isinstance(alphas, dict):
            for pc, a in alphas.items():
                if not 0 <= int(pc) < self.n_components:
                    raise IndexError(f"PC {pc} out of range (the PCA has {self.n_components} components)")
                coef[int(pc)] = float(a)
        else:
            a = np.asarray(alphas, dtype=np.float64).reshape(-1)
            if len(a) > self.n_components:
                raise ValueError(f"{len(a)} alphas for {self.n_components} components")
            coef[:len(a)] = a
        return ((coef * self.std) @ self.components.astype(np.float64)).astype(np.float32)

    # ---- storage ----------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the arrays as ``.npz`` atomically (no object arrays, nothing pickled)."""
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, components=self.components, std=self.std,
                 explained_variance_ratio=self.explained_variance_ratio, n_samples=np.int64(self.n_samples),
                 source_sha256=np.array(self.source_sha256))
        return write_bytes_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> IdentityPCA:
        """Read what :meth:`save` wrote (``allow_pickle=False``); WorkspaceError if missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise WorkspaceError(f"no identity PCA at {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["mean"].astype(np.float32), z["components"].astype(np.float32),
                           z["std"].astype(np.float32), z["explained_variance_ratio"].astype(np.float32),
                           int(z["n_samples"]), str(z["source_sha256"]))
        except (KeyError, ValueError, OSError) as exc:
            raise WorkspaceError(f"{path}: unreadable identity PCA ({exc})") from None


def load_or_fit_pca(embeddings: np.ndarray, path: str | Path, n_components: int = 16) -> IdentityPCA:
    """The PCA stored at ``path`` if it was fitted on exactly these embeddings, else fit, save and return it."""
    path = Path(path)
    if path.is_file():
        try:
            pca = IdentityPCA.load(path)
            if pca.source_sha256 == _fingerprint(embeddings) and pca.n_components >= min(
                    n_components, len(embeddings) - 1, np.shape(embeddings)[1]):
                return pca
            log.info("%s is stale (embeddings changed or more components asked); refitting", path)
        except WorkspaceError as exc:
            log.warning("%s; refitting", exc)
    pca = IdentityPCA.fit(embeddings, n_components)
    pca.save(path)
    log.info("identity PCA: %d components, %.1f%% of the variance, saved to %s", pca.n_components,
             100 * float(pca.explained_variance_ratio.sum()), path)
    return pca
