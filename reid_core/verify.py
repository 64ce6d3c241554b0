"""Pair verification: "are these two radiographs of the same patient?"

Following Macpherson et al. 2023, the verifier is a logistic regression on one
feature, the Euclidean distance ``d`` between the two embeddings:
``p(same | d) = σ(coef · d + intercept)`` (``coef < 0`` for any useful
embedding), with the decision ``p ≥ threshold`` (0.5 by default). The decision
is therefore a distance cut-off, :attr:`PairVerifier.distance_threshold`.

Fit on the validation split, report on the test split::

    rng = np.random.default_rng(0)
    verifier = PairVerifier().fit(emb[val], patient[val], rng)
    verifier.save(workspace)                                  # -> workspace/verifier.json
    report = verification_metrics(verifier, emb[test], patient[test], rng=rng)

Pairs (:func:`make_pairs`): all same-patient pairs plus, by default, as many
different-patient pairs drawn uniformly at random. When the positive pairs
exceed the cap they are a uniform random subset of all positive pairs (so the
capped set is an unbiased sample of the uncapped one; patients with many images
contribute more pairs, exactly as they would without the cap).

Fitting details: the distance is standardised before an L2-regularised
(``C=1``) logistic regression with balanced class weights, then the
coefficients are folded back to raw-distance units. Standardising makes the
regularisation scale-free; it is also what keeps the fit finite on perfectly
separable data (an unregularised fit diverges). Balanced weights make
``p = 0.5`` the equal-prior operating point whatever the negative:positive ratio.
The saved ``verifier.json`` holds plain numbers only (no pickle).

Which pairs: ``fit(..., pairs="random")`` is the protocol above. ``pairs="neighbours"`` (what
``cxr-reid evaluate`` fits since issue 16) fits the same one-feature logistic, unweighted, on each
image's 10 nearest images (:mod:`reid_core.hard_pairs`): random pairs hold easy negatives only, so
their p overstated how likely a search's close hit is the same patient; fitted on search results, p is
the share of same-patient pairs at that distance among search results (checked in
:mod:`reid_core.pair_eval`). ``fit_stats["pairs"]`` records which.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from reid_core.atomic import write_text_atomic
from reid_core.bootstrap import as_rng, bootstrap_pair_metrics
from reid_core.errors import WorkspaceError
from reid_core.metrics import as_embedding_matrix, encode_labels
from reid_core.roc import ROC_MAX_POINTS, roc_points

VERIFIER_FILE = "verifier.json"
_FORMAT = "cxr-reid/pair-verifier"
_VERSION = 1
DEFAULT_MAX_PAIRS = 1_000_000
_ENUMERATE_LIMIT = 1_000_000  # below this many image pairs, negatives are drawn from the full list


# ---------------------------------------------------------------------------
# pairs
# ---------------------------------------------------------------------------
def _decode_lower_triangle(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair number ``u = b(b-1)/2 + a`` (``0 ≤ a < b``) → ``(a, b)``, exact for u < 2⁵⁰."""
    u = u.astype(np.int64)
    b = np.floor((1.0 + np.sqrt(1.0 + 8.0 * u)) / 2.0).astype(np.int64)
    b = np.where(b * (b - 1) // 2 > u, b - 1, b)  # float rounding fix-ups
    b = np.where((b + 1) * b // 2 <= u, b + 1, b)
    return u - b * (b - 1) // 2, b


def make_pairs(
    labels: Sequence,
    rng: np.random.Generator | int | None,
    max_negatives_per_positive: int = 1,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image pairs for fitting/evaluating a verifier: ``(i, j, same)`` with ``i < j``.

    * Positives: every pair of two images of the same patient; if there are more
      than ``max_pairs // (1 + max_negatives_per_positive)``, a uniform random
      subset of that size (without replacement).
    * Negatives: ``max_negatives_per_positive`` × #positives pairs of images of
      two different patients, uniform without replacement over all such pairs
      (fewer if fewer exist).

    Returned positives first, then negatives; ``i``/``j`` are int64 row indices
    into ``labels``, ``same`` is bool. Deterministic given ``rng``.
    """
    codes = encode_labels(labels, len(np.asarray(labels)))
    n = len(codes)
    if max_negatives_per_positive < 0 or max_pairs < 1:
        raise ValueError("max_negatives_per_positive must be ≥ 0 and max_pairs ≥ 1")
    rng = as_rng(rng)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    group_start = np.r_[0, np.cumsum(sizes)[:-1]]
    n_pairs_group = sizes * (sizes - 1) // 2
    pair_offset = np.r_[0, np.cumsum(n_pairs_group)]
    total_pos = int(pair_offset[-1])
    cap = max(1, max_pairs // (1 + max_negatives_per_positive))
    t = np.arange(total_pos, dtype=np.int64) if total_pos <= cap else np.sort(rng.choice(total_pos, cap, replace=False))
    g = np.searchsorted(pair_offset, t, side="right") - 1
    a, b = _decode_lower_triangle(t - pair_offset[g])
    pi, pj = order[group_start[g] + a], order[group_start[g] + b]
    pos_i, pos_j = np.minimum(pi, pj), np.maximum(pi, pj)

    n_neg_avail = n * (n - 1) // 2 - total_pos
    n_neg = min(max_negatives_per_positive * len(t), n_neg_avail)
    neg_i, neg_j = _sample_negatives(codes, n_neg, rng)
    i = np.concatenate([pos_i, neg_i]).astype(np.int64)
    j = np.concatenate([pos_j, neg_j]).astype(np.int64)
    same = np.r_[np.ones(len(pos_i), bool), np.zeros(len(neg_i), bool)]
    return i, j, same


def _sample_negatives(codes: np.ndarray, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(codes)
    if n_neg <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if n * (n - 1) // 2 <= _ENUMERATE_LIMIT:
        ii, jj = np.triu_indices(n, k=1)
        neg = np.flatnonzero(codes[ii] != codes[jj])
        pick = np.sort(rng.choice(len(neg), n_neg, replace=False))
        return ii[neg[pick]].astype(np.int64), jj[neg[pick]].astype(np.int64)
    # Large sets: rejection sampling of uniform (i, j), de-duplicated.
    keys = np.empty(0, np.int64)
    while len(keys) < n_neg:
        m = 2 * (n_neg - len(keys)) + 64
        x, y = rng.integers(0, n, m), rng.integers(0, n, m)
        ok = codes[x] != codes[y]
        lo, hi = np.minimum(x[ok], y[ok]), np.maximum(x[ok], y[ok])
        keys = np.unique(np.r_[keys, lo.astype(np.int64) * n + hi])
    keys = np.sort(rng.choice(keys, n_neg, replace=False))
    return keys // n, keys % n


def pair_distances(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray, chunk_size: int = 65536) -> np.ndarray:
    """Euclidean distance between rows ``i`` and ``j`` of ``embeddings`` (float64, chunked)."""
    x = np.asarray(embeddings)
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk_size):
        diff = x[i[s:s + chunk_size]].astype(np.float64) - x[j[s:s + chunk_size]]
        out[s:s + chunk_size] = np.sqrt(np.einsum("nd,nd->n", diff, diff))
    return out


# ---------------------------------------------------------------------------
# the verifier
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VerificationResult:
    """Outcome of verifying one pair of embeddings."""

    distance: float
    probability: float
    same_patient: bool


class PairVerifier:
    """Logistic regression ``p(same) = σ(coef · distance + intercept)``; decides ``p ≥ threshold``."""

    def __init__(
        self,
        coef: float | None = None,
        intercept: float | None = None,
        threshold: float = 0.5,
        fit_stats: dict[str, Any] | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"probability threshold must lie in (0, 1), got {threshold}")
        if (coef is None) != (intercept is None):
            raise ValueError("give both coef and intercept, or neither")
        self.coef = None if coef is None else float(coef)
        self.intercept = None if intercept is None else float(intercept)
        self.threshold = float(threshold)
        self.fit_stats: dict[str, Any] = dict(fit_stats or {})

    # -- fitting ------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.coef is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("PairVerifier is not fitted: call fit() or load a verifier.json")

    def fit_distances(self, distances: np.ndarray, same: np.ndarray,
                      class_weight: str | None = "balanced") -> "PairVerifier":
        """Fit on precomputed pair distances and same-patient flags (both classes required).

        ``class_weight="balanced"``: p = 0.5 where both classes are equally likely a priori; ``None``: p is
        calibrated on the fitted population itself (its share of same-patient pairs included).
        """
        d = np.asarray(distances, dtype=np.float64).ravel()
        y = np.asarray(same, dtype=bool).ravel()
        if d.shape != y.shape or not np.isfinite(d).all():
            raise ValueError("distances must be finite and match `same` in length")
        if y.all() or not y.any():
            raise ValueError("need both same-patient and different-patient pairs to fit a verifier")
        mu, sd = d.mean(), d.std()
        sd = sd if sd > 0 else 1.0
        lr = LogisticRegression(C=1.0, class_weight=class_weight, max_iter=1000)
        lr.fit(((d - mu) / sd)[:, None], y)
        w, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        self.coef = w / sd
        self.intercept = b - w * mu / sd
        self.fit_stats.update({
            "n_pairs": int(len(d)),
            "n_positive_pairs": int(y.sum()),
            "n_negative_pairs": int((~y).sum()),
            "positive_distance_mean": float(d[y].mean()),
            "positive_distance_median": float(np.median(d[y])),
            "negative_distance_mean": float(d[~y].mean()),
            "negative_distance_median": float(np.median(d[~y])),
            "regularisation_C": 1.0,
            "class_weight": class_weight or "none",
        })
        return self

    def fit(
        self,
        embeddings: np.ndarray,
        labels: Sequence,
        rng: np.random.Generator | int | None = None,
        max_negatives_per_positive: int = 1,
        max_pairs: int = DEFAULT_MAX_PAIRS,
        pairs: str = "random",
    ) -> "PairVerifier":
        """Fit on the pairs of one labelled set (normally the validation split); returns ``self``.

        ``pairs="random"``: :func:`make_pairs`, balanced class weights (p = 0.5 is the equal-prior point).
        ``pairs="neighbours"``: each image with its 10 nearest images (:func:`reid_core.hard_pairs.fit_pairs`),
        unweighted, so p is the share of same-patient pairs at that distance *among a search's results*:
        calibrated where the app shows it, not only on random pairs (``max_negatives_per_positive`` unused).
        """
        from reid_core.hard_pairs import fit_pairs

        x = as_embedding_matrix(embeddings)
        codes = encode_labels(labels, len(x))
        if pairs == "random":
            i, j, same = make_pairs(codes, rng, max_negatives_per_positive, max_pairs)
        else:
            i, j, same = fit_pairs(x, codes, as_rng(rng), pairs, max_pairs)
        if not same.any():
            raise ValueError("no patient has two images: cannot form same-patient pairs")
        self.fit_distances(pair_distances(x, i, j), same, class_weight="balanced" if pairs == "random" else None)
        self.fit_stats.update({
            "n_images": int(len(x)),
            "n_patients": int(codes.max() + 1),
            "embedding_dim": int(x.shape[1]),
            "max_negatives_per_positive": int(max_negatives_per_positive),
            "pairs": pairs,
        })
        return self

    # -- inference ----------------------------------------------------------
    def decision_function(self, distance: np.ndarray | float) -> np.ndarray:
        """The logit ``coef · d + intercept`` (monotone in p, never saturates)."""
        self._require_fitted()
        return self.coef * np.asarray(distance, dtype=np.float64) + self.intercept

    def predict_proba(self, distance: np.ndarray | float) -> np.ndarray | float:
        """Probability that pairs at Euclidean ``distance`` show the same patient (same shape as input)."""
        z = self.decision_function(distance)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # numerically stable sigmoid
        return float(p) if np.ndim(p) == 0 else p

    def predict(self, distance: np.ndarray | float) -> np.ndarray | bool:
        """``predict_proba(distance) ≥ threshold``."""
        p = self.predict_proba(distance)
        return bool(p >= self.threshold) if np.ndim(p) == 0 else p >= self.threshold

    @property
    def distance_threshold(self) -> float:
        """The distance at which ``p == threshold`` (pairs closer than this are called "same")."""
        self._require_fitted()
        if self.coef >= 0:
            return float("nan")  # distance does not separate: no meaningful cut-off
        logit = np.log(self.threshold / (1.0 - self.threshold))
        return float((logit - self.intercept) / self.coef)

    @property
    def is_informative(self) -> bool:
        """Whether the same-patient probability falls with distance (a fitted coefficient below 0).

        A verifier fitted on an undertrained embedder can come out flat or inverted
        (AUC ≤ 0.5 on its fitting pairs); its decisions then mean nothing.
        """
        return self.coef is not None and self.coef < 0

    def verify(self, a: np.ndarray, b: np.ndarray) -> VerificationResult:
        """Verify one pair of embedding vectors (1-D, same length as at fit time if known)."""
        va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if va.ndim != 1 or va.shape != vb.shape:
            raise ValueError(f"verify() takes two 1-D vectors of equal length, got {va.shape} and {vb.shape}")
        dim = self.fit_stats.get("embedding_dim")
        if dim is not None and len(va) != dim:
            raise ValueError(f"embedding dimension {len(va)} differs from the verifier's ({dim})")
        d = float(np.linalg.norm(va - vb))
        p = float(self.predict_proba(d))
        return VerificationResult(distance=d, probability=p, same_patient=p >= self.threshold)

    # -- persistence --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._require_fitted()
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "coef": self.coef,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "distance_threshold": self.distance_threshold,  # informational, recomputed on load
            "fit_stats": self.fit_stats,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> "PairVerifier":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a verifier JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} document")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported verifier version {data.get('version')!r} (expected {_VERSION})")
        try:
            return cls(data["coef"], data["intercept"], data["threshold"], data.get("fit_stats"))
        except KeyError as exc:
            raise ValueError(f"verifier JSON lacks {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path``, or to ``path/verifier.json`` when ``path`` is a directory."""
        p = Path(path)
        if p.is_dir():
            p = p / VERIFIER_FILE
        return write_text_atomic(p, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "PairVerifier":
        p = Path(path)
        if p.is_dir():
            p = p / VERIFIER_FILE
        if not p.is_file():
            raise WorkspaceError(f"{p}: verifier file not found")
        try:
            return cls.from_json(p.read_text())
        except ValueError as exc:
            raise WorkspaceError(f"{p}: {exc}") from exc


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------
def verification_metrics(
    verifier: PairVerifier,
    embeddings: np.ndarray,
    labels: Sequence,
    patient_ids: Sequence | None = None,
    rng: np.random.Generator | int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    max_negatives_per_positive: int = 1,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    roc_max_points: int = ROC_MAX_POINTS,
) -> dict[str, Any]:
    """Evaluate a fitted verifier on the pairs of a held-out set (normally the test split).

    Pairs come from :func:`make_pairs` on ``labels`` (same-patient flag).
    ``patient_ids`` are the bootstrap's resampling units (default: ``labels``).
    Returns ``roc_auc`` (pairs ranked by the verifier's logit, i.e. by distance,
    closer = "same", for any verifier with ``coef < 0``), ``accuracy``, ``sensitivity``,
    ``specificity``, ``f1`` (decision at the verifier's probability threshold),
    each with ``_ci_low``/``_ci_high`` from the patient bootstrap of
    :mod:`reid_core.bootstrap`; ``threshold`` (the distance at which p equals the
    probability threshold), ``probability_threshold``, ``n_pairs``,
    ``n_positive_pairs``, ``n_negative_pairs``, ``n_patients``, ``n_boot``,
    ``ci_level``; and ``roc``: the curve of the rule ``p ≥ t`` on these pairs as at most
    ``roc_max_points`` points (:func:`reid_core.roc.roc_points`; left out when 0).
    """
    verifier._require_fitted()
    x = as_embedding_matrix(embeddings)
    codes = encode_labels(labels, len(x))
    pid = codes if patient_ids is None else encode_labels(patient_ids, len(x))
    rng = as_rng(rng)
    i, j, same = make_pairs(codes, rng, max_negatives_per_positive, max_pairs)
    if not same.any() or same.all():
        raise ValueError("the evaluation set yields no same-patient or no different-patient pair")
    d = pair_distances(x, i, j)
    return scored_pair_metrics(verifier.decision_function(d), same, pid[i], pid[j], verifier, rng=rng,
                               n_boot=n_boot, level=level, all_patients=np.unique(pid),
                               roc_max_points=roc_max_points)


def scored_pair_metrics(
    logits: np.ndarray,
    same: np.ndarray,
    patient_a: np.ndarray,
    patient_b: np.ndarray,
    verifier: PairVerifier,
    rng: np.random.Generator | int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    all_patients: np.ndarray | None = None,
    roc_max_points: int = ROC_MAX_POINTS,
) -> dict[str, Any]:
    """:func:`verification_metrics`' output from pairs already scored (``logits``: coef · d + intercept).

    The decision is ``p ≥ verifier.threshold``; ``threshold`` reports ``verifier``'s distance cut-off. Used
    directly when the pairs were scored by several verifiers (cross-fitting, :mod:`reid_core.pair_eval`).
    """
    logits = np.asarray(logits, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    prob = 0.5 * (1.0 + np.tanh(0.5 * logits))
    out = bootstrap_pair_metrics(logits, same, prob >= verifier.threshold, patient_a, patient_b, n_boot=n_boot,
                                 rng=rng, level=level, all_patients=all_patients)
    universe = np.unique(np.r_[patient_a, patient_b]) if all_patients is None else np.asarray(all_patients)
    out.update({
        "threshold": verifier.distance_threshold,
        "probability_threshold": verifier.threshold,
        "n_pairs": int(len(same)),
        "n_positive_pairs": int(same.sum()),
        "n_negative_pairs": int((~same).sum()),
        "n_patients": int(len(universe)),
    })
    if roc_max_points:
        out["roc"] = roc_points(prob, same, max_points=roc_max_points)
    return out
