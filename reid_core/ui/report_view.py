"""Tables of the model report page for the newer report.json sections: 1:N identification and calibration."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reid_core.ui.explain import PAIR_SET_HELP
from reid_core.ui.tables import _num, format_ci

SECTION_TITLES: dict[str, str] = {
    "evaluation_set": "which images were evaluated, and why",
    "retrieval": "retrieval (every evaluated film queried against all others)",
    "verification": "pair verification on random held-out pairs",
    "calibration": "calibration of p_same on four kinds of pairs",
    "identification": "1:N identification at gallery scale",
    "database_size_curve": "P@1 as distractors join the gallery",
    "longitudinal": "longitudinal drift",
    "diagnosis": "neighbour-vote diagnosis",
    "baseline": "pixel baseline under the same protocol",
    "embedder": "the embedder's checkpoint record",
}


def identification_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per gallery size: probes, rank-1 [CI], FNIR [CI] at each FPIR with its distance threshold."""
    rows = []
    for g in ((report.get("identification") or {}).get("galleries") or []):
        row: dict[str, Any] = {"gallery (patients)": f"{g['gallery_size']:,}"}
        if "skipped" in g:
            row["rank-1 [95% CI]"] = "—"
            row["note"] = g["skipped"]
            rows.append(row)
            continue
        row["mated searches (patients)"] = f"{g['n_mated_probes']} ({g['n_mated_patients']})"
        row["non-mated searches (patients)"] = f"{g['n_nonmated_probes']} ({g['n_nonmated_patients']})"
        row["rank-1 [95% CI]"] = format_ci(_num(g.get("rank1")), _num(g.get("rank1_ci_low")),
                                           _num(g.get("rank1_ci_high")))
        for p in g.get("fnir_at_fpir") or []:
            key = f"FNIR at FPIR {p['fpir_target']:g}"
            if "fnir" not in p:
                row[key] = "— (" + p.get("note", "not estimable") + ")"
                continue
            thr = p.get("distance_threshold")
            at = f"d < {thr:.3f}" if isinstance(thr, (int, float)) else "any d"
            if isinstance(p.get("p_same_at_threshold"), (int, float)):
                at += f", p_same ≥ {p['p_same_at_threshold']:.2f}"
            row[key] = format_ci(_num(p["fnir"]), _num(p.get("fnir_ci_low")), _num(p.get("fnir_ci_high"))) + \
                f" ({at})"
        vt = g.get("at_verifier_threshold")
        if vt:
            row["at p_same ≥ 0.5: FPIR / FNIR"] = f"{_num(vt.get('fpir')):.3f} / {_num(vt.get('fnir')):.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per pair set: pairs, patients, share same, mean p_same, ECE [CI], share called same [CI]."""
    cal = report.get("calibration") or {}
    rows = []
    for name, help_text in PAIR_SET_HELP.items():
        c = cal.get(name)
        if not isinstance(c, Mapping) or not c.get("n_pairs"):
            continue
        ci = lambda k: format_ci(_num(c.get(k)), _num(c.get(f"{k}_ci_low")), _num(c.get(f"{k}_ci_high")))  # noqa: E731
        rows.append({"pairs": name.replace("_", " "), "what they are": help_text,
                     "n pairs (patients)": f"{c['n_pairs']} ({c.get('n_patients', '?')})",
                     "share same-patient": f"{_num(c.get('frequency')):.3f}", "mean p_same": ci("mean_p"),
                     "ECE [95% CI]": ci("ece"), f"called same (p ≥ {c.get('threshold', 0.5):g})": ci("called_same")})
    return pd.DataFrame(rows)


def report_sections(report: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(key, title, content)`` for every top-level entry of report.json, known sections first."""
    known = [k for k in SECTION_TITLES if k in report]
    rest = sorted(k for k in report if k not in SECTION_TITLES)
    return [(k, SECTION_TITLES.get(k, k.replace("_", " ")), report[k]) for k in known + rest]
