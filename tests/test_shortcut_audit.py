"""Shortcut audit (issue 18 point 2): the P@1 table over phantom variants, and ``cxr-reid shortcut-audit``."""
from __future__ import annotations

import json

import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from reid_core.checkpoint import save_embedder
from reid_core.cli import main
from reid_core.data.phantom.generator import PhantomGenerator
from reid_core.data.phantom.variants import AS_IS, PINNED, audit_variants
from reid_core.model import Embedder, EmbedderConfig
from reid_core.shortcut_audit import COLUMNS, markdown_table, shortcut_audit

SIZE = 64


@pytest.fixture(scope="module")
def gen() -> PhantomGenerator:
    return PhantomGenerator(seed=1, size=SIZE)


def _tiny_embedder() -> Embedder:
    torch.manual_seed(0)
    return Embedder(EmbedderConfig(backbone="resnet10t", embedding_dim=8, image_size=32)).eval()


def test_the_audit_table_has_every_variant_with_n_and_ci(gen):
    patients = range(5)
    specs = [s for i in patients for s in gen.studies(i)]
    names = [v.name for v in audit_variants(specs)]
    tables = shortcut_audit(gen, patients, {"tiny": _tiny_embedder()}, n_boot=30, progress=False)
    table = tables["tiny"]
    assert list(table.columns) == list(COLUMNS) and list(table["variant"]) == names
    assert names[0] == AS_IS and {"no_marks", "no_devices", "no_marks_no_devices", "no_findings",
                                  PINNED + "all_acquisition"} <= set(names)
    assert (table["n_patients"] == 5).all() and (table["n_films"] == len(specs)).all()
    assert (table["ci_low"] <= table["p_at_1"] + 1e-12).all() and (table["p_at_1"] <= table["ci_high"] + 1e-12).all()
    first = table.iloc[0]
    assert first["delta"] == 0 and first["n_changed"] == 0
    assert table.set_index("variant").loc[PINNED + "rotation", "n_changed"] == len(specs)
    text = markdown_table(table)
    assert all(f"| {n} |" in text for n in names) and "n = 5 patients" in text


def test_cli_runs_end_to_end(tmp_path):
    save_embedder(tmp_path / "emb", _tiny_embedder())
    out = tmp_path / "audit.json"
    rc = main(["shortcut-audit", "--checkpoint", str(tmp_path / "emb"), "--seed", "1", "--patients", "3",
               "--size", str(SIZE), "--n-boot", "10", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "shortcut_audit" and report["phantom"]["seed"] == 1 and report["patients"] == 3
    (audit,) = report["audits"]
    assert audit["image_size"] == 32 and len(audit["weights_sha256"]) == 64
    assert audit["rows"][0]["variant"] == AS_IS and len(audit["rows"]) == len(audit_variants(
        [s for i in range(3) for s in PhantomGenerator(seed=1, size=SIZE).studies(i)]))


def test_cli_audits_the_hard_phantom(tmp_path):
    save_embedder(tmp_path / "emb", _tiny_embedder())
    out = tmp_path / "hard.json"
    rc = main(["shortcut-audit", "--checkpoint", str(tmp_path / "emb"), "--seed", "1", "--patients", "3",
               "--size", str(SIZE), "--n-boot", "10", "--difficulty", "hard", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads(out.read_text())
    (audit,) = report["audits"]
    names = [r["variant"] for r in audit["rows"]]
    assert PINNED + "unsharp" in names and PINNED + "sid" in names  # the hard phantom's own factors are audited
