"""What do the identity PCs mean? Measured against the phantom's ground-truth anatomy, not guessed.

Two measurements:

* :func:`pc_factor_r2` — for real images, the R² of a linear regression of each
  ground-truth factor on each PC score alone (one simple regression per cell, so
  R² is the squared Pearson correlation): a factors × PCs table. On the phantom,
  ``factors_df`` is ``PhantomGenerator.factors_table(ids)`` aligned with the
  embeddings by ``image_id`` (:func:`align_factors`).
* :func:`factor_response` — for generated images, how a factor *read off the
  image* changes as PC k is moved: a ridge regressor from embedder features to the
  factor, fitted on real images (:func:`fit_factor_regressor`, cross-validated R²
  reported so its trustworthiness is visible), is applied to the counterfactuals
  along α; :func:`response_slope` gives the within-condition least-squares slope
  (factor units per σ of the PC; ``slope_sd`` divides by the factor's real SD).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch

from gan.io import resize

if TYPE_CHECKING:
    from gan.counterfactual import CounterfactualRenderer
    from gan.pca import IdentityPCA
    from reid_core.model import Embedder

log = logging.getLogger(__name__)

DEFAULT_FACTORS: tuple[str, ...] = (
    "heart_width", "apparent_ctr", "id_ctr", "id_thorax_half_width", "id_thorax_height", "id_sex", "age",
    "id_dome_y_r", "id_dome_y_l", "id_dome_difference", "id_body_depth", "id_fat", "id_breast",
    "id_neck_half_width", "id_shoulder_slope", "id_rib_spacing", "id_bone_density", "id_spine_x",
    "id_scoliosis", "id_trachea_x", "id_clavicle_y_r", "id_n_marks",
)
"""Phantom factors reported by default (those present are used)."""


def numeric_factors(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Numeric view of factor columns: numbers as float, two-level text (sex) as 0/1; seeds, ids and
    constant columns dropped. ``columns`` None: every column."""
    out = {}
    for col in (df.columns if columns is None else [c for c in columns if c in df.columns]):
        s = df[col]
        if col.endswith("_seed") or col in ("image_id", "patient_id", "phantom_patient", "study_order"):
            continue
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = s.astype(float)
        else:
            levels = sorted(s.dropna().astype(str).unique())
            if len(levels) != 2:
                continue
            v = (s.astype(str) == levels[1]).astype(float).where(s.notna())  # e.g. sex: F → 0, M → 1
        if v.nunique(dropna=True) > 1:
            out[col] = v
    return pd.DataFrame(out, index=df.index)


def pc_factor_r2(pc_scores: np.ndarray, factors_df: pd.DataFrame) -> pd.DataFrame:
    """R² (factors × ``PC1…PCK``) of the simple linear regression of each factor on each PC score.

    Rows of ``pc_scores`` (N×K) align with rows of ``factors_df``; NaN factor values
    are left out per factor. Non-numeric columns are converted or dropped by
    :func:`numeric_factors`.
    """
    scores = np.asarray(pc_scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(factors_df):
        raise ValueError(f"pc_scores {scores.shape} must be N×K with N = {len(factors_df)} factor rows")
    factors = numeric_factors(factors_df)
    table = np.full((factors.shape[1], scores.shape[1]), np.nan)
    for i, col in enumerate(factors.columns):
        y = factors[col].to_numpy()
        ok = np.isfinite(y)
        if ok.sum() < 3:
            continue
        yc = y[ok] - y[ok].mean()
        xc = scores[ok] - scores[ok].mean(axis=0)
        denom = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (xc * yc[:, None]).sum(axis=0) / denom
        table[i] = np.where(denom > 0, r**2, np.nan)
    return pd.DataFrame(table, index=pd.Index(factors.columns, name="factor"),
                        columns=[f"PC{k + 1}" for k in range(scores.shape[1])])


def align_factors(image_ids: Sequence[str], factors_df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``factors_df`` (with an ``image_id`` column) in the order of ``image_ids`` (KeyError if absent)."""
    indexed = factors_df.set_index(factors_df["image_id"].astype(str))
    missing = [i for i in map(str, image_ids) if i not in indexed.index]
    if missing:
        raise KeyError(f"{len(missing)} image id(s) have no factor row, e.g. {missing[0]!r}")
    return indexed.loc[list(map(str, image_ids))].reset_index(drop=True)


def identity_pc_r2(pca: "IdentityPCA", embeddings: np.ndarray, image_ids: Sequence[str], factors_df: pd.DataFrame,
                   columns: Sequence[str] | None = DEFAULT_FACTORS) -> pd.DataFrame:
    """:func:`pc_factor_r2` of the PCA's scores of ``embeddings`` against the phantom factors of the same
    images (aligned by ``image_id``; ``columns`` None: every factor column)."""
    aligned = align_factors(image_ids, factors_df)
    if columns is not None:
        aligned = aligned[[c for c in columns if c in aligned.columns]]
    return pc_factor_r2(pca.scores(embeddings), aligned)


# --------------------------------------------------------------------------- factor regressors

@dataclass(frozen=True)
class FactorRegressor:
    """Ridge regression ``factor ≈ ((f - mean) / scale) · coef + intercept`` on embedder features."""

    name: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    y_std: float
    cv_r2: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha).fit(x, y)
    return np.asarray(model.coef_, np.float64), float(model.intercept_)


def fit_factor_regressor(features: np.ndarray, values: np.ndarray, name: str = "factor", alpha: float = 10.0,
                         folds: int = 5, seed: int = 0) -> FactorRegressor:
    """Ridge (standardised features) from N×F embedder features of real images to one factor, with k-fold R².

    For patient-level factors pass rows of distinct patients or accept that
    cross-validation across images of one patient is optimistic.
    """
    x, y = np.asarray(features, np.float64), np.asarray(values, np.float64)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < max(folds, 3):
        raise ValueError(f"need at least {max(folds, 3)} finite values to fit {name!r}, got {len(y)}")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    xs = (x - mean) / scale
    order = np.random.default_rng(seed).permutation(len(y))
    pred = np.empty_like(y)
    for part in np.array_split(order, folds):
        train = np.setdiff1d(order, part)
        coef, b = _ridge(xs[train], y[train], alpha)
        pred[part] = xs[part] @ coef + b
    ss_tot = float(((y - y.mean()) ** 2).sum())
    cv_r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    coef, b = _ridge(xs, y, alpha)
    return FactorRegressor(name, mean, scale, coef, b, float(y.std()), cv_r2)


# --------------------------------------------------------------------------- responses of generated images

@torch.no_grad()
def _features(embedder: "Embedder", images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    x = x.to(next(embedder.parameters()).device)
    return embedder.features(resize(x, size).clamp(0.0, 1.0)).cpu().numpy()


def sweep_features(renderer: "CounterfactualRenderer", embedder: "Embedder", c0s: np.ndarray, pc: int,
                   alphas: Sequence[float], embed_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(condition index, features)`` of the counterfactuals of every ``c0`` along PC ``pc`` (α fastest)."""
    size = int(embed_size or embedder.config.image_size)
    cond, feats = [], []
    for i, c0 in enumerate(np.atleast_2d(np.asarray(c0s, np.float32))):
        frames = np.stack([renderer.render(c0, {int(pc): float(a)}) for a in alphas])
        feats.append(_features(embedder, frames, size))
        cond += [i] * len(alphas)
    return np.asarray(cond), np.concatenate(feats)


def _response_frame(regressor: FactorRegressor, cond: np.ndarray, feats: np.ndarray, pc: int,
                    alphas: Sequence[float]) -> pd.DataFrame:
    return pd.DataFrame({"condition": cond, "pc": int(pc), "alpha": np.tile(np.asarray(alphas, float), len(cond)
                                                                             // max(len(alphas), 1)),
                         "factor": regressor.name, "prediction": regressor.predict(feats)})


def factor_response(renderer: "CounterfactualRenderer", regressor: FactorRegressor, embedder: "Embedder",
                    c0s: np.ndarray, pc: int, alphas: Sequence[float], embed_size: int | None = None) -> pd.DataFrame:
    """Regressor output on counterfactuals: one row per (condition, α) with columns
    ``condition, pc, alpha, factor, prediction`` (``pc`` 0-based, as in ``render``)."""
    cond, feats = sweep_features(renderer, embedder, c0s, pc, alphas, embed_size)
    return _response_frame(regressor, cond, feats, pc, alphas)


def response_slope(response: pd.DataFrame) -> float:
    """Within-condition least-squares slope of ``prediction`` on ``alpha`` (per-condition intercepts)."""
    a = response["alpha"] - response.groupby("condition")["alpha"].transform("mean")
    p = response["prediction"] - response.groupby("condition")["prediction"].transform("mean")
    denom = float((a * a).sum())
    return float((a * p).sum() / denom) if denom > 0 else float("nan")


def factor_response_table(renderer: "CounterfactualRenderer", regressors: Sequence[FactorRegressor],
                          embedder: "Embedder", c0s: np.ndarray, pcs: Sequence[int],
                          alphas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
                          embed_size: int | None = None) -> pd.DataFrame:
    """Long table ``factor, pc, slope, slope_sd, regressor_cv_r2`` over regressors × PCs (``pc`` 1-based).

    Each PC's counterfactuals are rendered and embedded once and shared by all regressors.
    """
    rows = []
    for pc in pcs:
        cond, feats = sweep_features(renderer, embedder, c0s, pc, alphas, embed_size)
        for reg in regressors:
            slope = response_slope(_response_frame(reg, cond, feats, pc, alphas))
            rows.append({"factor": reg.name, "pc": int(pc) + 1, "slope": slope,
                         "slope_sd": slope / reg.y_std if reg.y_std > 0 else float("nan"),
                         "regressor_cv_r2": reg.cv_r2})
    return pd.DataFrame(rows)
