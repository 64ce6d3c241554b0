"""Shortcut audit: what an identity embedder's re-identification rests on, measured on the phantom.

The held-out phantom films are rendered once per variant
(:mod:`reid_core.data.phantom.variants`: marks or devices removed, findings
removed, one acquisition factor pinned) and each embedder's leave-one-out P@1
(:func:`reid_core.metrics.per_query_metrics`, cosine: embeddings are
L2-normalised) is measured on every variant. Reading:

* removing marks or devices and P@1 **drops**: identity rests on them;
* pinning a factor and P@1 **rises**: that nuisance hurts the embedder
  (pinning takes its variation away from every film, same patient or not).

Films go through the path of ``cxr-reid prepare`` + ``embed``: rendered at the
store's ``size``, letterboxed to uint8, resized by the model to its training
size. CIs are patient-bootstrap percentile intervals over the queries (the
gallery fixed, :func:`reid_core.bootstrap.bootstrap_mean_ci`); ΔP@1 is paired:
the same queries, the per-query difference resampled by patient.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from reid_core.bootstrap import bootstrap_mean_ci
from reid_core.data.cache import letterbox
from reid_core.data.phantom.generator import PhantomGenerator, patient_id
from reid_core.data.phantom.variants import AS_IS, Variant, audit_variants
from reid_core.embed import embed_array
from reid_core.metrics import per_query_metrics

COLUMNS = ("variant", "p_at_1", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "n_patients",
           "n_films", "n_queries", "n_changed", "p_at_1_changed_as_is", "p_at_1_changed", "description")


class FilmArray:
    """uint8 ``N × S × S`` films in memory, indexed like an :class:`~reid_core.data.store.ImageStore`."""

    def __init__(self, images: np.ndarray) -> None:
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"films must be N×S×S uint8, got {images.dtype}{images.shape}")
        self.images = images
        self.size = int(images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        return self.images[rows]


def render_films(gen: PhantomGenerator, specs: Sequence, variant: Variant) -> np.ndarray:
    """uint8 films (as the image store holds them) of ``specs`` under ``variant``."""
    out = np.zeros((len(specs), gen.size, gen.size), dtype=np.uint8)
    for k, spec in enumerate(specs):
        out[k] = letterbox(variant.render(gen, spec), gen.size)
    return out


def query_p_at_1(embeddings: np.ndarray, patients: np.ndarray) -> np.ndarray:
    """Per-film leave-one-out P@1 under cosine similarity (NaN where the patient has one film)."""
    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return per_query_metrics(x, patients, ks=(1,))["precision_at_1"].to_numpy()


def _row(variant: Variant, p1: np.ndarray, base: np.ndarray, changed: np.ndarray, patients: np.ndarray,
         n_boot: int, seed: int) -> dict[str, object]:
    whole = bootstrap_mean_ci(p1, patients, n_boot, rng=seed)
    delta = bootstrap_mean_ci(p1 - base, patients, n_boot, rng=seed)
    q = np.isfinite(p1)
    moved = changed & q
    return {"variant": variant.name, "p_at_1": whole["value"], "ci_low": whole["ci_low"], "ci_high": whole["ci_high"],
            "delta": delta["value"], "delta_ci_low": delta["ci_low"], "delta_ci_high": delta["ci_high"],
            "n_patients": int(len(np.unique(patients))), "n_films": int(len(p1)), "n_queries": int(q.sum()),
            "n_changed": int(changed.sum()),
            "p_at_1_changed_as_is": float(base[moved].mean()) if moved.any() else float("nan"),
            "p_at_1_changed": float(p1[moved].mean()) if moved.any() else float("nan"),
            "description": variant.description}


def shortcut_audit(gen: PhantomGenerator, patients: Sequence[int], embedders: Mapping[str, torch.nn.Module],
                   variants: Sequence[Variant] | None = None, n_boot: int = 1000, seed: int = 0,
                   batch_size: int = 64, device: str = "cpu", progress: bool = True) -> dict[str, pd.DataFrame]:
    """One table per embedder (columns :data:`COLUMNS`, one row per variant, ``as_is`` first).

    ``variants`` default to :func:`audit_variants` of the audited studies. ``n_changed`` counts the films
    whose pixels differ from ``as_is``; ``p_at_1_changed*`` are P@1 over those films only (before/after).
    """
    specs = [s for i in patients for s in gen.studies(i)]
    if len(specs) < 2:
        raise ValueError(f"need at least two films to audit, got {len(specs)}")
    pids = np.array([patient_id(s.patient) for s in specs])
    variants = list(variants) if variants is not None else audit_variants(specs)
    if not variants or variants[0].name != AS_IS:
        raise ValueError(f"the first variant must be {AS_IS!r} (the reference of every Δ)")
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in embedders}
    base_films: np.ndarray | None = None
    base_p1: dict[str, np.ndarray] = {}
    bar = tqdm(variants, desc="shortcut audit", unit="variant", disable=not progress)
    for variant in bar:
        bar.set_postfix_str(variant.name)
        films = render_films(gen, specs, variant)
        if base_films is None:
            base_films = films
        changed = (films != base_films).reshape(len(films), -1).any(axis=1)
        store = FilmArray(films)
        for name, model in embedders.items():
            emb = embed_array(model, store, np.arange(len(films)),  # type: ignore[arg-type]  # FilmArray: a store
                              batch_size, device, progress=False)
            p1 = query_p_at_1(emb, pids)
            base_p1.setdefault(name, p1)
            rows[name].append(_row(variant, p1, base_p1[name], changed, pids, n_boot, seed))
    bar.close()
    return {name: pd.DataFrame(r, columns=list(COLUMNS)) for name, r in rows.items()}


def markdown_table(table: pd.DataFrame) -> str:
    """The audit table as Markdown (P@1 with CI, ΔP@1 with paired CI, n; changed films before → after)."""
    def f(v: float) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.3f}"

    lines = ["| variant | P@1 [95% CI] | ΔP@1 vs as_is [95% CI] | films changed "
             "| P@1 on changed films, as_is → variant |", "|---|---|---|---:|---|"]
    for r in table.itertuples(index=False):
        delta = "" if r.variant == AS_IS else f"{r.delta:+.3f} [{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]"
        moved = "" if r.n_changed == 0 else f"{f(r.p_at_1_changed_as_is)} → {f(r.p_at_1_changed)}"
        lines.append(f"| {r.variant} | {f(r.p_at_1)} [{f(r.ci_low)}, {f(r.ci_high)}] | {delta} | "
                     f"{r.n_changed} | {moved} |")
    first = table.iloc[0]
    lines.append(f"\nn = {first.n_patients} patients, {first.n_films} films ({first.n_queries} queries) per variant.")
    return "\n".join(lines)


def _finite_or_none(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def audit_report(tables: Mapping[str, pd.DataFrame], settings: Mapping[str, object],
                 checkpoints: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, object]:
    """A JSON-ready report: the run's ``settings`` and, per embedder, its checkpoint facts and table rows
    (undefined values as null)."""
    audits = []
    for name, table in tables.items():
        rows = [{k: _finite_or_none(v) for k, v in r.items()} for r in table.to_dict(orient="records")]
        audits.append({"embedder": name, **dict((checkpoints or {}).get(name, {})), "rows": rows})
    return {"kind": "shortcut_audit", **dict(settings), "audits": audits}
