"""Ship a workspace's autoencoder-trained generator into ``checkpoints/gan`` with a model card.

:func:`ship_generator` copies the verified generator + encoder pair, ``metrics.json``
(from ``cxr-reid cae-evaluate``) and the training log, and writes ``MODEL_CARD.md``
from them: what was trained on what, for how long on which machine, and every
judged figure beside its goal. Files are copied through temp names and the JSON
records last, so an interrupted ship never leaves weights beside a wrong record.
"""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

from reid_core import artefact_names as names
from reid_core.atomic import atomic_path, write_text_atomic
from reid_core.errors import WorkspaceError
from gan.views import IDENTITY_ROWS

FILES = (*names.GENERATOR_FILES, *names.ENCODER_FILES, names.TRAIN_LOG, names.RUN_METRICS)


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def model_card(meta: dict[str, Any], metrics: dict[str, Any], notes: str = "") -> str:
    """The Markdown model card of a generator (``meta``: its config.json meta; ``metrics``: the ``autoencoder`` block)."""
    stats, train, gan = meta.get("stats", {}), meta.get("train", {}), meta.get("gan", {})
    judges = list(metrics.get("judges", {}))
    lines = [
        f"# Model card: cxr-reid counterfactual generator ({gan.get('resolution')} px, autoencoder objective)",
        "",
        "**Research use only. Not a medical device; synthetic training data; not for identifying real people.**",
        "",
        "## What it is",
        f"A StyleGAN2 generator (mapping of [nuisance code n ({gan.get('z_dim')}-d), identity embedding c "
        f"({gan.get('c_dim')}-d)] to w, modulated synthesis at {gan.get('resolution')} px) and a nuisance encoder "
        "E(film) → n, trained together as a conditional autoencoder on a CPU. c is the shipped embedder's "
        "identity embedding of a film (`checkpoints/embedder`, frozen): counterfactuals encode a film once, move c "
        "along the identity PCs and decode. Weights: `G_ema.safetensors` + `config.json`, `E_ema.safetensors` + "
        "`encoder.json` (SHA-256 checked on load; the encoder's record names the generator it belongs to).",
        "",
        "## Training",
        f"Objective: reconstruction (L1 {train.get('l1_weight')} + SSIM {train.get('ssim_weight')}"
        + (f" + the frozen embedder's stage-feature distance {train.get('feat_weight')}, ramped in from "
           f"{train.get('feat_start_kimg')} kimg" if train.get("feat_weight") else "") + "), "
        f"same-patient cross-reconstruction (p {train.get('cross_prob')}), identity cycle through the frozen "
        f"embedder on {train.get('id_fraction')} of each batch (weight {train.get('id_weight')}, augmented renders"
        + (f"; also through {len(train['id_ensemble'])} other frozen recogniser(s), "
           f"`{'`, `'.join(train['id_ensemble'])}`, weight {train.get('id_ensemble_weight')} from "
           f"{train.get('id_ensemble_start_kimg')} kimg" if train.get("id_ensemble") else "") + "), "
        f"nuisance cycle ({train.get('n_cycle_weight')}), KL prior on n ({train.get('kl_weight')}), conditioning "
        f"noise {train.get('c_noise')}, conditional discriminator ramped in from {train.get('adv_start_kimg')} kimg "
        f"(weight {train.get('adv_weight')}). Batch {train.get('batch')} (pairs of films of one patient), "
        f"Adam lr {train.get('lr')}. Full options in `config.json` (`meta.train`).",
        f"Shown {_fmt(stats.get('kimg'), 1)} kimg in {stats.get('step')} steps; training time "
        f"{_fmt((stats.get('train_time_s') or 0) / 3600, 2)} h ({_fmt(stats.get('s_per_kimg'), 1)} s/kimg) on "
        f"{platform.machine()}, {stats.get('threads')} thread(s), device {stats.get('device')}; data: "
        f"{stats.get('n_images')} films of the training split, of which those of the {stats.get('n_patients')} "
        "patients with two or more films form the pairs.",
        "",
        "## Judged figures (held-out patients the generator never saw)",
        f"{metrics.get('n_patients')} patients of the {metrics.get('split')} split, {metrics.get('n_films')} films. "
        f"Judges: the conditioning embedder (used by the identity-cycle loss) and an independent recogniser "
        f"({metrics.get('judge_backbone')} at {metrics.get('judge_image_size')} px, another seed, never in any "
        "generator loss). Top-1 = the patient of the most similar other real film among all held-out films.",
        "",
        "| figure | goal | " + " | ".join(judges) + " |",
        "|---|---|" + "---|" * len(judges),
    ]
    for key, label, goal in IDENTITY_ROWS:
        lines.append(f"| {label} | {goal} | " + " | ".join(_fmt(metrics['judges'][j].get(key)) for j in judges) + " |")
    rec, real = metrics.get("reconstruction", {}), metrics.get("realism", {})
    gen, base = real.get("generated", {}), real.get("real_baseline", {})
    lines += [
        "",
        f"Reconstruction: PSNR {_fmt(rec.get('psnr_db'), 1)} dB, SSIM {_fmt(rec.get('ssim'))}.",
        "",
        f"Realism ({real.get('judge')} features, {real.get('n_per_set')} images per set; generated = "
        f"{real.get('generated_set')}; baseline = real films of other held-out patients):",
        "",
        "| | KID × 1000 | precision | recall | C2ST AUC (goal ≤ 0.80) |",
        "|---|---|---|---|---|",
        f"| generated vs real | {_fmt(gen.get('kid_x1000'), 2)} | {_fmt(gen.get('precision'), 2)} | "
        f"{_fmt(gen.get('recall'), 2)} | {_fmt(gen.get('c2st_auc'))} |",
        f"| real vs real | {_fmt(base.get('kid_x1000'), 2)} | {_fmt(base.get('precision'), 2)} | "
        f"{_fmt(base.get('recall'), 2)} | {_fmt(base.get('c2st_auc'))} |",
    ]
    pcm = metrics.get("pc_meaning")
    if isinstance(pcm, dict) and pcm.get("table"):
        lines += ["", f"What the top identity PCs mean ({pcm.get('agree')} of {len(pcm['table'])} agree; goal ≥ 4 of 5): "
                  "the phantom factor a PC's score correlates with most on real films, and the factor a sweep of "
                  "that PC moves most in generated films (ridge regressors on the independent judge's features, "
                  "fitted on real films; only factors they read with cross-validated R² ≥ 0.3 compete).", "",
                  "| PC | variance % | correlates most with (real) | R² | sweep moves most | slope (SD/σ) | agree |",
                  "|---|---|---|---|---|---|---|"]
        for row in pcm["table"]:
            lines.append(f"| {row['PC']} | {row['variance %']} | {row['correlates most with (real films)']} | "
                         f"{row['R²']} | {row['sweep moves most']} | {row['slope (SD per σ)']} | "
                         f"{'yes' if row['agree'] else 'no'} |")
    lines += ["", "## Limits",
              "- Trained and judged on synthetic phantom films only; on real radiographs re-train it with "
              "`cxr-reid train-cae` on your workspace and judge it with `cxr-reid cae-evaluate`.",
              "- The generator draws what the *embedder* encodes: a counterfactual explains the identity model, "
              "not the patient.",
              f"- {gan.get('resolution')} px: fine structure (small nodules, device detail) is below its resolution."]
    if notes:
        lines += ["", "## Notes", notes]
    return "\n".join(lines) + "\n"


def ship_generator(workspace: Path, out: Path, notes: str = "") -> Path:
    """Copy the workspace's generator pair + metrics into ``out`` and write ``MODEL_CARD.md``; returns ``out``."""
    from gan.cae.io import load_encoder
    from gan.io import load_generator
    from reid_core.checkpoint import read_checkpoint_meta
    from reid_core.workspace import Workspace

    ws = Workspace(workspace)
    load_generator(ws.gan_dir)  # verified before anything is copied
    load_encoder(ws.gan_dir)
    try:
        metrics = json.loads((ws.gan_metrics_path).read_text(encoding="utf-8"))["autoencoder"]
    except (OSError, ValueError, KeyError) as exc:
        raise WorkspaceError(f"{ws.gan_dir} has no judged figures ({exc}); run `cxr-reid cae-evaluate --workspace "
                             f"{ws.root}` first") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        with atomic_path(out / name) as tmp:
            shutil.copyfile(ws.gan_dir / name, tmp)
    write_text_atomic(out / "MODEL_CARD.md", model_card(read_checkpoint_meta(ws.gan_dir), metrics, notes))
    load_encoder(out)
    return out
