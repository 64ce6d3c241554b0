"""Every page over a workspace with one damaged artefact: a typed message naming the file, never a traceback.

The workspace is the app tests' tiny trained one plus an untrained ``tiny`` generator, so all seven pages have
something to open. Each case copies it to a fresh folder (the page caches key on path and mtime), damages one
file — cut in half with garbage appended, or valid JSON of the wrong shape — and walks through every page in one
session: no page may raise (the app turns only :class:`~reid_core.errors.CxrReidError` into a message, so an
untyped failure would still surface here as an exception), the pages that need the file must show an
``st.error`` naming it, and the sidebar must still be there afterwards.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from gan.config import GanConfig, build_generator
from gan.snapshot import save_generator
from reid_core.workspace import Workspace

from app_fixtures import build_trained_workspace
from test_app import PAGES, each_page

pytest.importorskip("streamlit.testing.v1")

EMBED_PAGES = {"explorer", "verification", "retrieval", "longitudinal"}
CASES = [  # (artefact, damage, pages that must name it in an st.error)
    ("manifest.parquet", "garbage", {"overview"} | EMBED_PAGES),
    ("embeddings.npz", "garbage", EMBED_PAGES),
    ("index.faiss", "garbage", {"retrieval"}),
    ("index.ids.json", "garbage", {"retrieval"}),
    ("index.ids.json", "json-list", {"retrieval"}),
    ("embedder/model.safetensors", "garbage", {"verification"}),
    ("embedder/config.json", "garbage", {"verification"}),
    ("embedder/config.json", "json-list", {"verification"}),
    ("embedder/metrics.json", "json-list", set()),  # only informative: the pages go on without it
    ("verifier.json", "garbage", {"verification", "retrieval"}),
    ("verifier.json", "json-list", {"verification", "retrieval"}),
    ("report.json", "garbage", {"overview", "report"}),
    ("report.json", "json-list", {"overview", "report"}),
    ("report.json", "json-nested", set()),  # sound at the top, wrong types inside: a message, not a traceback
    ("images_64.npy", "garbage", {"verification", "retrieval", "longitudinal"}),
    ("images_64.state.json", "json-list", set()),  # an unreadable state is an unfinished store: "run prepare"
    ("workspace.json", "json-list", set()),
    ("gan/G_ema.safetensors", "garbage", {"counterfactuals"}),
    ("gan/config.json", "garbage", {"counterfactuals"}),
]


@pytest.fixture(scope="module")
def sound(tmp_path_factory) -> Path:
    """A trained workspace with embeddings, index, verifier, report and an untrained 16-d tiny generator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = build_trained_workspace(tmp_path_factory.mktemp("artefacts") / "sound")
    cfg = GanConfig.preset("tiny", c_dim=16)
    torch.manual_seed(0)
    save_generator(ws.gan_dir, build_generator(cfg), cfg, {"preset": "tiny"}, {"kimg": 0.0})
    return ws.root


def damage(path: Path, how: str) -> None:
    if how == "garbage":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\x00garbage{")
    elif how == "json-list":
        path.write_text("[1, 2]")
    elif how == "json-nested":
        path.write_text('{"retrieval": "oops", "verification": [1], "identification": {"galleries": 3}, '
                        '"calibration": 7, "evaluation_set": "x", "n_test_patients": "many"}')
    else:
        raise ValueError(how)


def walk_pages(root: Path) -> dict[str, list[str]]:
    """Page name → its st.error texts, visiting every page in one session; fails on any exception."""
    errors = {}
    for page, at in each_page(root):
        errors[page] = [str(e.value) for e in at.error]
        assert at.sidebar.selectbox[0].label == "Workspace"  # the app around the page still works
    return errors


def test_the_sound_workspace_shows_no_error(sound):
    assert walk_pages(sound) == {page: [] for page in PAGES}


@pytest.mark.parametrize("artefact,how,pages", CASES, ids=[f"{a}-{h}" for a, h, _ in CASES])
def test_a_damaged_artefact_is_a_message_on_every_page(sound, tmp_path, artefact, how, pages):
    root = Path(shutil.copytree(sound, tmp_path / "ws"))
    damage(root / artefact, how)
    errors = walk_pages(root)
    name = Path(artefact).name
    naming = {page for page, texts in errors.items() if any(name in t for t in texts)}
    assert pages <= naming, errors
    assert not any("Traceback" in t for texts in errors.values() for t in texts)
