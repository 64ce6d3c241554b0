"""Artefact file names live in reid_core.artefact_names; the Workspace turns them into paths for everyone else."""
from __future__ import annotations

import re
from pathlib import Path

from reid_core import artefact_names as names
from reid_core.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SPELLED = re.compile(r"[\"'](model|G_ema|E_ema)\.safetensors[\"']|[\"'](card|encoder)\.json[\"']")


def test_no_module_or_page_spells_a_weights_or_record_file_name():
    sources = [*ROOT.joinpath("reid_core").rglob("*.py"), *ROOT.joinpath("gan").rglob("*.py"),
               *ROOT.joinpath("pages").glob("*.py"), ROOT / "app.py"]
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in sources if p.name != "artefact_names.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if SPELLED.search(line)]
    assert len(sources) > 100 and offenders == []


def test_workspace_paths_are_the_named_files(tmp_path):
    ws = Workspace(tmp_path)
    assert ws.embedder_weights_path == tmp_path / "embedder" / "model.safetensors"
    assert ws.embedder_record_path.name == "config.json" and ws.embedder_card_path.name == names.EMBEDDER_CARD
    assert ws.generator_weights_path == tmp_path / "gan" / "G_ema.safetensors"
    assert ws.encoder_weights_path.name == "E_ema.safetensors" and ws.gan_metrics_path.name == "metrics.json"
    assert names.ENCODER_FILES == ("E_ema.safetensors", "encoder.json")


def test_the_shipped_checkpoints_hold_the_named_files():
    ckpt = ROOT / "checkpoints"
    for folder, files in (("embedder", names.EMBEDDER_FILES), ("judge", names.EMBEDDER_FILES),
                          ("gan", names.GENERATOR_FILES + names.ENCODER_FILES)):
        assert all((ckpt / folder / f).is_file() for f in files), folder
