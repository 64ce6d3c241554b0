"""The CLI end to end on a tiny synthetic workspace: train → embed → evaluate → verify/search/audit, bad queries."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.cli import main
from reid_core.data.manifest import load_manifest, save_manifest
from reid_core.data.store import ImageStore
from reid_core.embed import EmbeddingTable
from reid_core.retrieval import Index

from train_fixtures import make_workspace  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe") / "ws"
    ws = make_workspace(root, n_patients=40, per_patient=4, size=32)
    m = load_manifest(ws.manifest_path)
    num = m["patient_id"].str[1:].astype(int)
    m.loc[num % 4 == 2, "split"] = "test"
    save_manifest(m, ws.manifest_path)
    sets = ["model.backbone=resnet10t", "model.embedding_dim=16", "batch_size=16", "m_per_patient=4",
            "max_steps=12", "num_workers=0", "warmup_steps=2", "val_every=1000", "lr=2e-3"]
    args = ["train", "--workspace", str(root), "--quiet"] + [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    assert main(["embed", "--workspace", str(root)]) == 0
    return ws


def test_embed_writes_aligned_table_and_index(trained):
    table = EmbeddingTable.load(trained.embeddings_path)
    m = load_manifest(trained.manifest_path)
    assert table.embeddings.shape == (len(m), 16) and table.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(table.embeddings, axis=1), 1, atol=1e-4)
    assert list(table.image_ids) == m["image_id"].tolist()
    index = Index.load(trained.root)
    d, ids = index.search_id(m["image_id"].iloc[0], 3)
    assert len(ids) == 3 and m["image_id"].iloc[0] not in set(ids)
    mtime = trained.embeddings_path.stat().st_mtime_ns
    assert main(["embed", "--workspace", str(trained.root)]) == 0  # up to date: skipped
    assert trained.embeddings_path.stat().st_mtime_ns == mtime


def test_evaluate_writes_report_with_required_keys(trained, capsys):
    assert main(["evaluate", "--workspace", str(trained.root), "--n-boot", "20"]) == 0
    report = json.loads(trained.report_path.read_text())
    for dotted in ("retrieval.precision_at_1", "retrieval.map_at_r", "retrieval.r_precision", "verification.auc",
                   "verification.f1", "verification.threshold", "baseline.retrieval.precision_at_1"):
        node = report
        for part in dotted.split("."):
            node = node[part]
        assert node is None or np.isfinite(node), dotted
    assert trained.verifier_path.exists()
    # trained in this workspace (no card.json naming other data): the test split only, and the report says so
    ev = report["evaluation_set"]
    assert ev["mode"] == "test" and ev["splits"] == {"test": 40} and "trained on this workspace" in ev["reason"]
    assert report["identification"]["galleries"][0]["gallery_size"] == 100
    out = capsys.readouterr().out
    assert "evaluated 40 images of 10 patients (test)" in out and "1:N gallery 100: skipped" in out


def _png(path, arr):
    Image.fromarray(arr).save(path)
    return path


def test_verify_search_audit_and_bad_queries(trained, tmp_path, capsys):
    if not trained.verifier_path.exists():
        assert main(["evaluate", "--workspace", str(trained.root), "--n-boot", "10"]) == 0
    m = load_manifest(trained.manifest_path)
    store = ImageStore(trained.images_path(32), m)
    big = lambda row: np.kron(store[row], np.ones((3, 3), np.uint8))  # 96 px, above the query minimum
    a = _png(tmp_path / "a.png", big(0))
    b = _png(tmp_path / "b.png", big(1))
    capsys.readouterr()
    assert main(["verify", "--workspace", str(trained.root), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "same-patient probability" in out and "decision" in out
    assert main(["search", "--workspace", str(trained.root), str(a), "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "distance" in out and "patient_id" in out and len(out.strip().splitlines()) == 6
    assert main(["search", "--workspace", str(trained.root), m["image_id"].iloc[3], "-k", "3"]) == 0
    assert main(["audit", "--workspace", str(trained.root)]) == 0
    assert (trained.root / "audit" / "likely_mislabelled.csv").exists()
    # bad input: not an image, too small
    (tmp_path / "notes.png").write_text("this is not an image")
    assert main(["verify", "--workspace", str(trained.root), str(tmp_path / "notes.png"), str(b)]) == 2
    assert "notes.png" in capsys.readouterr().err
    tiny = _png(tmp_path / "tiny.png", np.zeros((20, 20), np.uint8))
    assert main(["search", "--workspace", str(trained.root), str(tiny)]) == 2
    assert "at least 64 px" in capsys.readouterr().err


def test_lateral_dicom_query_is_refused(tmp_path):
    from fixtures_datasets import write_dicom

    from reid_core.query import QueryError, load_query_image

    lateral = write_dicom(tmp_path / "lat.dcm", "P1", "1.2.3", "1.2.3.4", view="LL", size=128)
    with pytest.raises(QueryError, match="lateral"):
        load_query_image(lateral, 64)
    frontal = write_dicom(tmp_path / "pa.dcm", "P1", "1.2.3", "1.2.3.5", view="PA", size=128)
    assert load_query_image(frontal, 64).shape == (64, 64)


def test_dimension_sweep_table(trained, capsys):
    sets = ["model.backbone=resnet10t", "batch_size=16", "m_per_patient=4", "max_steps=4", "num_workers=0",
            "warmup_steps=1", "val_every=1000"]
    args = ["evaluate", "--workspace", str(trained.root), "--dims", "4,8", "--n-boot", "10"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    table = pd.read_csv(trained.root / "dim_sweep.csv")
    assert table["embedding_dim"].tolist() == [4, 8]
    assert table["precision_at_1"].between(0, 1).all() and table["verification_auc"].between(0, 1).all()
    sub = EmbeddingTable.load(trained.root / "sweeps" / "dim4" / "embeddings.npz")
    assert sub.embeddings.shape[1] == 4
    assert (trained.root / "sweeps" / "dim8" / "manifest.parquet").is_symlink()  # shared, not copied


def test_train_gan_then_gan_evaluate(trained, capsys):
    sets = ["preset=tiny", "res=16", "batch=4", "kimg=0.016", "tick_kimg=0.008", "snapshot_kimg=0.016",
            "device=cpu", "grid_rows=2", "grid_cols=2"]
    assert main(["train-gan", "--workspace", str(trained.root), "--quiet"]
                + [a for s in sets for a in ("--set", s)]) == 0
    assert (trained.gan_dir / "G_ema.safetensors").exists() and (trained.gan_dir / "samples.png").exists()
    capsys.readouterr()
    assert main(["gan-evaluate", "--workspace", str(trained.root), "--n", "16", "--max-real", "64"]) == 0
    metrics = json.loads((trained.gan_dir / "metrics.json").read_text())
    assert 0 <= metrics["top1_image"] <= 1 and metrics["mean_distance"] >= 0
    assert "frechet_distance" in metrics and "top1_image" in capsys.readouterr().out
