"""The demo workspace: a phantom cohort of unseen patients, analysed with the shipped checkpoints.

:func:`build_demo_workspace` is what ``cxr-reid demo`` (``make demo``) runs
before serving the app. Every step is skipped when its output is up to date,
so a second start only checks files:

1. phantom images (``DEMO_SEED`` differs from the training seed of the shipped
   models, so every demo patient is new to them);
2. the shipped embedder (``checkpoints/embedder``) installed into the
   workspace (weights verified by SHA-256 when loaded);
3. embeddings + exact FAISS index;
4. the verifier and ``report.json``: the installed card.json says the embedder
   saw phantom seed 0, so every demo image is evaluated (:mod:`reid_core.holdout`):
   retrieval, verification and calibration, 1:N identification (a gallery of
   100 of the 200 patients), drift, pixel baseline, each with n and CI;
5. the explorer's 2-D PCA projection;
6. the shipped generator (``checkpoints/gan``), when there is one.

Without shipped checkpoints (an installed wheel, or a checkout before training)
the demo holds images only and every page says which command builds the rest.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from reid_core import artefact_names as names
from reid_core.atomic import atomic_path, write_text_atomic
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)

SHIPPED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEMO_SEED = 1  # the shipped models are trained on phantom seed 0: seed 1 draws other people
DEMO_PATIENTS = 200
DISPLAY_SIZE = 128
_EMBEDDER_FILES = names.EMBEDDER_FILES
_GAN_FILES = names.GENERATOR_FILES
_ENCODER_FILES = names.ENCODER_FILES  # an autoencoder-trained generator's encoder
# copied along when shipped: the card (overview page), the training log and summary (model report's curves)
_EXTRA_FILES = (names.MODEL_CARD, names.EMBEDDER_CARD, names.TRAIN_LOG, names.RUN_METRICS)


@dataclass
class DemoBuild:
    """What :func:`build_demo_workspace` did: seconds per step, and which steps had work."""

    workspace: Workspace
    steps: dict[str, float] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.steps.values())

    def describe(self) -> str:
        parts = [f"{name} {secs:.1f} s" + ("" if name in self.built else " (up to date)")
                 for name, secs in self.steps.items()]
        text = f"demo workspace {self.workspace.root}: " + ", ".join(parts) + f"; total {self.total_s:.1f} s"
        if self.missing:
            text += "\nnot shipped: " + ", ".join(self.missing)
        return text


def shipped(kind: str, checkpoints: Path = SHIPPED_CHECKPOINTS) -> Path | None:
    """``checkpoints/<kind>`` when it holds a complete checkpoint (``embedder`` or ``gan``), else None."""
    files = _EMBEDDER_FILES if kind == "embedder" else _GAN_FILES
    folder = Path(checkpoints) / kind
    return folder if all((folder / f).is_file() for f in files) else None


def install_checkpoint(source: Path, target: Path, files: tuple[str, ...]) -> bool:
    """Copy a checkpoint's files into a workspace folder unless identical ones are there; True if copied.

    The JSON record (with the weights' SHA-256) decides: equal records mean equal
    weights, and a damaged copy still fails its hash check when loaded. Files go
    through temp names and the record is replaced last, as the checkpoint writer does.
    """
    record = files[-1]
    if (target / record).is_file() and (target / record).read_bytes() == (source / record).read_bytes():
        return False
    target.mkdir(parents=True, exist_ok=True)
    for name in _EXTRA_FILES + files:
        if name in _EXTRA_FILES and not (source / name).is_file():
            continue
        with atomic_path(target / name) as tmp:
            shutil.copyfile(source / name, tmp)
    return True


def _is_newer(path: Path, *inputs: Path) -> bool:
    return path.exists() and all(path.stat().st_mtime_ns >= p.stat().st_mtime_ns for p in inputs if p.exists())


def build_demo_workspace(root: str | Path, *, patients: int = DEMO_PATIENTS, seed: int = DEMO_SEED,
                         size: int | None = None, checkpoints: str | Path = SHIPPED_CHECKPOINTS,
                         progress: bool = True, n_boot: int = 200,
                         echo: Callable[[str], None] = print) -> DemoBuild:
    """Build (or bring up to date) the demo workspace at ``root``; see the module docstring.

    ``size``: the image store's side; default the larger of ``DISPLAY_SIZE`` (for
    the app's thumbnails) and the shipped embedder's training size (embedding
    resizes the store to the training size, as training did).
    """
    from reid_core.prepare import prepare_workspace

    ws = Workspace(root)
    result = DemoBuild(ws)
    checkpoints = Path(checkpoints)
    embedder_src, gan_src = shipped("embedder", checkpoints), shipped("gan", checkpoints)
    size = size or max(DISPLAY_SIZE, _shipped_size(embedder_src) or 0)

    def step(name: str, work: Callable[[], bool]) -> None:
        echo(f"[demo] {name} …")
        t0 = time.perf_counter()
        did = work()
        result.steps[name] = time.perf_counter() - t0
        (result.built if did else result.skipped).append(name)

    def images() -> bool:
        had = ws.images_path(size).exists()
        summary = prepare_workspace(ws, "phantom", size=size, patients=patients, seed=seed, progress=progress)
        echo(f"       {summary.describe()}")
        return not had or summary.n_new > 0

    step("images", images)
    if embedder_src is None:
        result.missing.append(f"embedder (no {checkpoints / 'embedder'}; train one with scripts/train_demo.sh)")
    else:
        step("embedder", lambda: install_checkpoint(embedder_src, ws.embedder_dir, _EMBEDDER_FILES))
        step("embeddings", lambda: _embed(ws, progress))
        step("report", lambda: _report(ws, n_boot))
        step("projection", lambda: _projection(ws))
    if gan_src is None:
        result.missing.append(f"GAN (no {checkpoints / 'gan'}; train one with scripts/train_demo.sh gan)")
    else:
        step("gan", lambda: _install_generator(gan_src, ws.gan_dir))
    _write_record(ws, result, checkpoints)
    return result


def _install_generator(source: Path, target: Path) -> bool:
    """The generator, then its encoder when it has one (the encoder's record names the generator's hash)."""
    copied = install_checkpoint(source, target, _GAN_FILES)
    if all((source / f).is_file() for f in _ENCODER_FILES):
        copied = install_checkpoint(source, target, _ENCODER_FILES) or copied
    return copied


def _shipped_size(embedder_src: Path | None) -> int | None:
    if embedder_src is None:
        return None
    from reid_core.checkpoint import read_checkpoint_meta

    return read_checkpoint_meta(embedder_src).get("embedder", {}).get("image_size")


def _embed(ws: Workspace, progress: bool) -> bool:
    from reid_core.embed import embed_workspace, embeddings_up_to_date

    if embeddings_up_to_date(ws):
        return False
    embed_workspace(ws, progress=progress)
    return True


def _report(ws: Workspace, n_boot: int) -> bool:
    from reid_core.evaluate import evaluate_workspace

    if _is_newer(ws.report_path, ws.embeddings_path) and _is_newer(ws.verifier_path, ws.embeddings_path):
        return False
    evaluate_workspace(ws, n_boot=n_boot)
    return True


def _projection(ws: Workspace) -> bool:
    from reid_core.ui.projection import workspace_projection

    return not workspace_projection(ws, "pca", 2).from_cache


def _write_record(ws: Workspace, result: DemoBuild, checkpoints: Path) -> None:
    """``demo.json``: the steps' times and the installed checkpoints' hashes (for the overview page)."""
    shas = {}
    for kind, files in (("embedder", _EMBEDDER_FILES), ("gan", _GAN_FILES)):
        record = (ws.embedder_dir if kind == "embedder" else ws.gan_dir) / files[-1]
        if record.is_file():
            shas[kind] = json.loads(record.read_text()).get("weights", {}).get("sha256")
    payload = {"steps_s": {k: round(v, 2) for k, v in result.steps.items()}, "built": result.built,
               "missing": result.missing, "checkpoints": str(checkpoints), "weights_sha256": shas}
    write_text_atomic(ws.root / "demo.json", json.dumps(payload, indent=2))
