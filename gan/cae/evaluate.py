"""How good an autoencoder-trained generator is, judged on held-out patients by two recognisers.

Every identity figure is computed with each *judge*: the conditioning embedder
(used by the training loss) and an independent recogniser (another backbone and
seed, never used by any generator loss). A large gap between the two means the
generator fools its embedder instead of drawing anatomy.

Protocol (:func:`evaluate_cae`), on ``patients`` held-out patients with two or
more films, every film at the generator's resolution:

* **real ceiling** — each real film against all other films: top-1 patient.
* **reconstruction** — ``G(E(x), c_x)`` against the films other than ``x``:
  top-1 own patient; PSNR / SSIM against ``x``.
* **identity swap** — ``G(E(x_A), c_B)`` with ``c_B`` from a film ``b`` of
  another patient; the gallery leaves out ``x_A`` and ``b``: top-1 to B
  (should be high) and to A (should be low).
* **sampled nuisance** — ``G(n ~ N(0, I), c_x)``: top-1 own patient.
* **realism** (independent judge's pooled features): KID, precision / recall
  (k-NN manifolds, Kynkäänniemi et al. 2019) and a classifier two-sample test
  (logistic regression, cross-validated AUC) of swaps vs real films, beside the
  same figures for real vs real films of other held-out patients at the same
  sample size.
* **PC meaning** — :func:`pc_meaning_agreement`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from gan.cae.losses import psnr, ssim
from gan.io import resize

if TYPE_CHECKING:
    from gan.cae.encoder import NuisanceEncoder
    from gan.networks import Generator
    from gan.pca import IdentityPCA
    from reid_core.model import Embedder

log = logging.getLogger(__name__)
BATCH = 64


@dataclass
class Judge:
    """A recogniser that grades generated films: its embedder and a name for the tables."""

    name: str
    embedder: "Embedder"

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings, pooled features)`` of (N, H, W) images in [0, 1]."""
        size = int(self.embedder.config.image_size)
        embs, feats = [], []
        for i in range(0, len(images), BATCH):
            x = resize(torch.from_numpy(np.ascontiguousarray(images[i:i + BATCH], np.float32))[:, None], size)
            x = x.clamp(0, 1)
            embs.append(self.embedder.embed(x).numpy())
            feats.append(self.embedder.features(x).numpy())
        return np.concatenate(embs), np.concatenate(feats)


def top1_patients(queries: np.ndarray, gallery: np.ndarray, gallery_patients: np.ndarray,
                  exclude: Sequence[Sequence[int]]) -> np.ndarray:
    """Patient of each query's most cosine-similar gallery film, leaving out ``exclude[i]`` for query ``i``."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    sims = q @ g.T
    for i, rows in enumerate(exclude):
        sims[i, list(rows)] = -np.inf
    return gallery_patients[np.argmax(sims, axis=1)]


# --------------------------------------------------------------------------- realism

def kid(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 200, seed: int = 0) -> float:
    """Kernel Inception Distance (unbiased MMD², cubic polynomial kernel) between feature sets, × 1000."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)].astype(np.float64)
        y = b[rng.choice(len(b), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return 1000.0 * total / subsets


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): shares of each set inside the other's k-NN balls."""
    from sklearn.metrics import pairwise_distances

    def radii(x: np.ndarray) -> np.ndarray:
        return np.sort(pairwise_distances(x), axis=1)[:, k]  # column 0 is the point itself

    def inside(points: np.ndarray, ref: np.ndarray, r: np.ndarray) -> float:
        return float((pairwise_distances(points, ref) <= r[None]).any(axis=1).mean())

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def c2st_auc(a: np.ndarray, b: np.ndarray, groups_a: np.ndarray | None = None, groups_b: np.ndarray | None = None,
             seed: int = 0) -> float:
    """Classifier two-sample test: 5-fold cross-validated ROC AUC of a logistic regression telling ``a`` from ``b``.

    With ``groups`` (e.g. patients) the folds keep each group on one side, so the classifier
    cannot tell the sets apart by recognising people it saw in training.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    if groups_a is None or groups_b is None:
        folds = min(5, len(a), len(b))
        cv, groups = StratifiedKFold(folds, shuffle=True, random_state=seed), None
    else:
        groups = np.concatenate([np.asarray(groups_a, str), np.asarray(groups_b, str)])
        folds = min(5, len(np.unique(groups)))
        cv = GroupKFold(folds)
    if folds < 2:
        return float("nan")  # too few images or people to hold any out
    p = cross_val_predict(model, x, y, cv=cv, groups=groups, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def realism(real: np.ndarray, fake: np.ndarray, real_other: np.ndarray, groups: Sequence[np.ndarray] | None = None,
            seed: int = 0) -> dict[str, Any]:
    """KID, precision/recall and C2ST AUC of ``fake`` vs ``real``, and of ``real_other`` vs ``real`` (baseline).

    ``groups``: the patient of each row of ``real``, ``fake`` (its identity) and ``real_other``, for the
    grouped C2ST folds. All sets are subsampled to the smallest one's size.
    """
    n = min(len(real), len(fake), len(real_other))
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(x), n, replace=False) for x in (real, fake, real_other)]
    r, f, o = (x[i] for x, i in zip((real, fake, real_other), picks))
    gr, gf, go = ((g[i] for g, i in zip(groups, picks)) if groups is not None else (None, None, None))
    out: dict[str, Any] = {"n_per_set": int(n), "c2st_folds": "grouped by patient" if groups is not None else "random"}
    for name, other, g_other in (("generated", f, gf), ("real_baseline", o, go)):
        p, rc = precision_recall(r, other)
        out[name] = {"kid_x1000": kid(r, other, seed=seed), "precision": p, "recall": rc,
                     "c2st_auc": c2st_auc(r, other, gr, g_other, seed=seed)}
    return out


# --------------------------------------------------------------------------- rendering

@torch.no_grad()
def encode(E: "NuisanceEncoder", images: np.ndarray) -> np.ndarray:
    """Nuisance means (N, n_dim) of (N, R, R) images in [0, 1] at the encoder's resolution."""
    out = []
    for i in range(0, len(images), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + BATCH], np.float32))[:, None] * 2 - 1
        out.append(E(x)[0].numpy())
    return np.concatenate(out)


@torch.no_grad()
def render(G: "Generator", z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``G(z, c)`` (N, R, R) in [0, 1], constant noise, no truncation."""
    out = []
    for i in range(0, len(z), BATCH):
        img = G(torch.from_numpy(z[i:i + BATCH]).float(), torch.from_numpy(c[i:i + BATCH]).float(),
                noise_mode="const")
        out.append((img[:, 0] * 0.5 + 0.5).clamp(0, 1).numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------- the protocol

@dataclass
class HeldOut:
    """Held-out films at the generator's resolution with their patients and conditioning embeddings."""

    images: np.ndarray  # (N, R, R) in [0, 1]
    patients: np.ndarray  # (N,) str
    conditions: np.ndarray  # (N, c_dim)
    image_ids: np.ndarray  # (N,) str


def pick_patients(patients: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` patients (sorted) with at least two films, drawn with ``seed``."""
    ids, counts = np.unique(patients, return_counts=True)
    eligible = ids[counts >= 2]
    if len(eligible) < 2:
        raise ValueError("need at least two held-out patients with two or more films")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, min(n, len(eligible)), replace=False))


def identity_figures(judge: Judge, G: "Generator", data: HeldOut, z: np.ndarray, swap_to: np.ndarray,
                     prior_z: np.ndarray, gallery: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Top-1 rates of one judge: real ceiling, reconstruction, swap (to B, to A), sampled nuisance."""
    emb_real, _ = gallery
    n = len(data.images)
    own = [[i] for i in range(n)]
    pats = data.patients
    ceiling = top1_patients(emb_real, emb_real, pats, own)
    rec = judge.embed(render(G, z, data.conditions))[0]
    swp = judge.embed(render(G, z, data.conditions[swap_to]))[0]
    smp = judge.embed(render(G, prior_z, data.conditions))[0]
    swap_pred = top1_patients(swp, emb_real, pats, [[i, int(j)] for i, j in enumerate(swap_to)])
    return {
        "real_top1": float((ceiling == pats).mean()),
        "reconstruction_top1": float((top1_patients(rec, emb_real, pats, own) == pats).mean()),
        "swap_top1_to_B": float((swap_pred == pats[swap_to]).mean()),
        "swap_top1_to_A": float((swap_pred == pats).mean()),
        "sampled_nuisance_top1": float((top1_patients(smp, emb_real, pats, own) == pats).mean()),
    }


def swap_partners(patients: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each film, a film of another patient (a random film of the next patient in sorted order)."""
    rng = np.random.default_rng([seed, 0x5A7])
    ids = np.unique(patients)
    rows = {p: np.flatnonzero(patients == p) for p in ids}
    nxt = {p: ids[(k + 1) % len(ids)] for k, p in enumerate(ids)}
    return np.array([rng.choice(rows[nxt[p]]) for p in patients], dtype=np.int64)


def evaluate_cae(G: "Generator", E: "NuisanceEncoder", judges: Sequence[Judge], data: HeldOut,
                 real_other: np.ndarray, other_patients: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """The figures of the module docstring for every judge (``judges[-1]`` grades realism).

    ``real_other``: real films of other held-out patients (the realism baseline), with their
    patients in ``other_patients`` (None: C2ST folds are not grouped by patient).
    """
    z = encode(E, data.images)
    gen = torch.Generator().manual_seed(seed)
    prior_z = torch.randn(len(z), z.shape[1], generator=gen).numpy()
    swap_to = swap_partners(data.patients, seed)
    rec = render(G, z, data.conditions)
    x = torch.from_numpy(data.images[:, None])
    r = torch.from_numpy(rec[:, None])
    out: dict[str, Any] = {
        "n_patients": int(len(np.unique(data.patients))), "n_films": int(len(data.images)),
        "resolution": int(data.images.shape[-1]),
        "reconstruction": {"psnr_db": float(psnr(r, x).mean()),
                           "ssim": float(ssim(r * 2 - 1, x * 2 - 1))},
        "judges": {},
    }
    for judge in judges:
        gallery = judge.embed(data.images)
        out["judges"][judge.name] = identity_figures(judge, G, data, z, swap_to, prior_z, gallery)
    independent = judges[-1]
    real_feats = independent.embed(data.images)[1]
    swap_feats = independent.embed(render(G, z, data.conditions[swap_to]))[1]
    other_feats = independent.embed(real_other)[1]
    out["realism"] = {"judge": independent.name, "generated_set": "identity swaps of the held-out films",
                      **realism(real_feats, swap_feats, other_feats,
                                None if other_patients is None else (data.patients, data.patients[swap_to],
                                                                     np.asarray(other_patients)), seed)}
    return out


def pc_meaning_agreement(G: "Generator", E: "NuisanceEncoder", judge: Judge, pca: "IdentityPCA",
                         data: HeldOut, factors: pd.DataFrame, n_pcs: int = 5, n_films: int = 24,
                         alphas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0), min_cv_r2: float = 0.3,
                         seed: int = 0) -> pd.DataFrame:
    """Per PC: the factor its score correlates with most on real films, and the factor a sweep moves most.

    Factors are the phantom's ground truth (``factors`` aligned by ``image_id``); only
    those a ridge regressor on the judge's features reads off real films with
    cross-validated R² ≥ ``min_cv_r2`` compete, in both columns. The sweep moves the
    condition of ``n_films`` encoded held-out films along the PC and measures the
    regressors' slope in factor SDs per PC σ.
    """
    from gan.interpret import DEFAULT_FACTORS, align_factors, fit_factor_regressor, numeric_factors, pc_factor_r2

    aligned = numeric_factors(align_factors(list(data.image_ids), factors), DEFAULT_FACTORS)
    feats = judge.embed(data.images)[1]
    regressors = {}
    for col in aligned.columns:
        reg = fit_factor_regressor(feats, aligned[col].to_numpy(), col, seed=seed)
        if np.isfinite(reg.cv_r2) and reg.cv_r2 >= min_cv_r2:
            regressors[col] = reg
    if not regressors:
        raise ValueError(f"no phantom factor is readable from the judge's features (cv R² ≥ {min_cv_r2})")
    r2 = pc_factor_r2(pca.scores(data.conditions), aligned[list(regressors)])
    rng = np.random.default_rng([seed, 0x5A8])
    films = rng.choice(len(data.images), min(n_films, len(data.images)), replace=False)
    z = encode(E, data.images[films])
    rows = []
    for pc in range(n_pcs):
        conds, codes, alpha_col = [], [], []
        for i, k in enumerate(films):
            for a in alphas:
                c = data.conditions[k] + pca.offset({pc: a})
                conds.append(c * np.linalg.norm(data.conditions[k]) / max(np.linalg.norm(c), 1e-12))
                codes.append(z[i])
                alpha_col.append(a)
        f = judge.embed(render(G, np.asarray(codes, np.float32), np.asarray(conds, np.float32)))[1]
        slopes = {}
        a = np.asarray(alpha_col).reshape(len(films), len(alphas))
        a = a - a.mean(axis=1, keepdims=True)
        for name, reg in regressors.items():
            p = reg.predict(f).reshape(len(films), len(alphas))
            p = p - p.mean(axis=1, keepdims=True)
            slopes[name] = float((a * p).sum() / (a * a).sum()) / reg.y_std if reg.y_std > 0 else 0.0
        col = r2.columns[pc]
        corr_best = str(r2[col].astype(float).idxmax())
        sweep_best = max(slopes, key=lambda k: abs(slopes[k]))
        rows.append({"PC": pc + 1, "variance %": round(100 * float(pca.explained_variance_ratio[pc]), 1),
                     "correlates most with (real films)": corr_best, "R²": round(float(r2[col].max()), 3),
                     "sweep moves most": sweep_best, "slope (SD per σ)": round(slopes[sweep_best], 3),
                     "agree": corr_best == sweep_best})
    return pd.DataFrame(rows)


def sampled_identity_top1(G: "Generator", judges: Sequence[Judge], data: HeldOut, seed: int = 0) -> dict[str, Any]:
    """Any conditional generator: ``G(z ~ N(0, I), c_x)`` for every held-out film, top-1 own patient per judge.

    The one identity figure a pure GAN and the autoencoder share (a pilot compares them with it).
    """
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(data.images), G.z_dim, generator=gen).numpy()
    fake = render(G, z, data.conditions)
    own = [[i] for i in range(len(fake))]
    out: dict[str, Any] = {}
    for judge in judges:
        real = judge.embed(data.images)[0]
        emb = judge.embed(fake)[0]
        out[judge.name] = {
            "sampled_top1": float((top1_patients(emb, real, data.patients, own) == data.patients).mean()),
            "real_top1": float((top1_patients(real, real, data.patients, own) == data.patients).mean())}
    return out
