"""One-line explanations the pages show beside numbers: what a metric means, which probability is shown,
which images an evaluation used and where a training log came from."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

METRIC_HELP: dict[str, str] = {
    "P@1": "share of queries whose nearest other film is the same patient (top-1 re-identification)",
    "P@5": "share of the 5 nearest films that are the query's patient (capped by how many films it has)",
    "P@10": "share of the 10 nearest films that are the query's patient (capped by how many films it has)",
    "R-precision": "with R = the patient's other films, the share of the R nearest that are the patient's",
    "mAP@R": "R-precision that also rewards ranking the patient's films first (Musgrave et al. 2020)",
    "ROC AUC": "chance that a random same-patient pair is closer than a random different-patient pair",
    "accuracy": "share of random pairs (half same-patient) decided right at p_same ≥ 0.5",
    "sensitivity": "share of same-patient pairs called same at p_same ≥ 0.5",
    "specificity": "share of random different-patient pairs called different at p_same ≥ 0.5",
    "F1": "harmonic mean of precision and sensitivity of the 'same' calls at p_same ≥ 0.5",
    "distance threshold": "embedding distance below which a pair is called the same patient (p_same = 0.5)",
    "matched drift AUC": "how well a follow-up's distance from its normal baseline flags a new finding "
                         "(0.5 = chance)",
    "neighbour-vote mean AUC": "how well the findings of a film's nearest other patients predict its own "
                               "findings (identity embeddings should carry little of this)",
    "rank-1": "share of mated searches (the patient is enrolled) whose best gallery match is the patient",
    "FNIR at FPIR": "share of mated searches missed when the threshold lets through only this share of "
                    "searches for people who are not enrolled",
    "ECE": "expected calibration error: mean gap between p_same and the observed share of same-patient pairs",
}

PAIR_SET_HELP: dict[str, str] = {
    "random": "random pairs, half same-patient (how verification is usually reported)",
    "search_results": "each film with its 10 nearest films (what the retrieval page lists)",
    "nearest_neighbour": "each film with its single nearest film (the top hit of a search)",
    "hardest_negative": "each film with its nearest film of another patient (all different; ECE = mean p_same)",
}


def metric_help(label: str) -> str:
    """The one-line explanation of a metric label (prefix match, e.g. 'neighbour-vote mean AUC (k=10)')."""
    if label in METRIC_HELP:
        return METRIC_HELP[label]
    return next((text for key, text in METRIC_HELP.items() if label.startswith(key)), "")


def p_same_explanation(fit_stats: Mapping[str, Any] | None, report: Mapping[str, Any] | None = None) -> str:
    """Which same-patient probability a page shows, in one line (from verifier.json's fit_stats)."""
    stats = fit_stats or {}
    n = stats.get("n_patients")
    ece = (((report or {}).get("calibration") or {}).get("search_results") or {}).get("ece")
    tail = f"; its calibration error on search results is {ece:.3f}" if isinstance(ece, (int, float)) else ""
    if stats.get("pairs") == "neighbours":
        return ("p_same is the share of same-patient pairs at this distance among search results (fitted on each "
                f"film's 10 nearest films{f' of {n} patients' if n else ''}), so it is calibrated for a result "
                f"list of a gallery that size{tail}.")
    return ("p_same is fitted on random pairs (half of them the same patient): it overstates how likely a close "
            "search result is the same patient; re-run `cxr-reid evaluate` for a verifier fitted on search "
            f"results{tail}.")


def evaluation_sentence(report: Mapping[str, Any] | None) -> str:
    """``"686 images of 200 patients (every patient is held out: …)"``, or the older report's test split."""
    rep = report or {}
    ev = rep.get("evaluation_set")
    if not ev:
        return (f"{rep.get('n_test_images', '?')} test-split images of {rep.get('n_test_patients', '?')} patients "
                "(an older report.json: re-run `cxr-reid evaluate` for the held-out set and its reason)")
    return f"{ev.get('n_images')} images of {ev.get('n_patients')} patients: {ev.get('reason')}"


def evaluated_all_unseen(report: Mapping[str, Any] | None) -> bool:
    """True when the report evaluated every image because the embedder never saw any of them."""
    ev = (report or {}).get("evaluation_set") or {}
    return ev.get("mode") == "all"


def training_source(card_text: str | None) -> str:
    """Where an installed embedder's training log came from (``card.json`` text), or this workspace."""
    if not card_text:
        return "training log of the embedder trained in this workspace (its train and val splits)"
    try:
        data = json.loads(card_text).get("data") or {}
    except (ValueError, AttributeError):
        return "training log shipped with the embedder"
    opts = data.get("options") or {}
    where = f"dataset '{data.get('dataset')}'" + (f", seed {opts['seed']}" if "seed" in opts else "") + \
            (f", {opts['patients']} patients" if "patients" in opts else "") + \
            (f", {opts['difficulty']} difficulty" if "difficulty" in opts else "")
    return (f"training log of the shipped embedder: {where} ({data.get('n_train_patients')} training patients), "
            "not this workspace's images")


def split_chart(splits: "pd.Series", report: Mapping[str, Any] | None) -> tuple["pd.Series", str]:
    """``(counts, title)`` for the overview's split chart: one bar of evaluated images when the embedder never
    saw the workspace (its train/val/test labels would suggest the embedder trained on some of them)."""
    import pandas as pd

    if evaluated_all_unseen(report):
        total = int(splits.sum())
        return pd.Series({"held out (never seen by the embedder)": total}, name="images"), \
            "images: all held out, all evaluated"
    return splits, "splits"


def headline_texts(report: Mapping[str, Any]) -> dict[str, str]:
    """The overview's headline numbers as ``value [95% CI]`` strings (``—`` where absent)."""
    from reid_core.ui.tables import _num, format_ci

    def ci(node: Mapping[str, Any] | None, key: str, ci_key: str | None = None) -> str:
        node = node or {}
        k = ci_key or key
        return format_ci(_num(node.get(key)), _num(node.get(f"{k}_ci_low")), _num(node.get(f"{k}_ci_high")))

    r, v = report.get("retrieval"), report.get("verification")
    base = ((report.get("baseline") or {}).get("retrieval")) or {}
    return {"P@1": ci(r, "precision_at_1"), "mAP@R": ci(r, "map_at_r"),
            "verification AUC": ci(v, "roc_auc"),
            "pixel baseline P@1": format_ci(_num(base.get("precision_at_1")), float("nan"), float("nan")),
            "drift AUC": ci(report.get("longitudinal"), "auc")}
