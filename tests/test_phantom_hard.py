"""The hard phantom (issue #18 points 1 and 5): determinism, twins, nuisance, wiring, and the standard one untouched."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from reid_core.cli import main
from reid_core.data.cache import letterbox
from reid_core.data.manifest import load_manifest
from reid_core.data.phantom import PhantomGenerator, phantom_factors, render_image, write_phantom_dataset
from reid_core.data.phantom.render import unsharp_mask
from reid_core.data.phantom.twins import N_TEMPLATES, TWIN_LAMBDA, blend_anatomy
from reid_core.data.store import ImageStore
from reid_core.prepare import phantom_difficulty, prepare_workspace
from reid_core.workspace import Workspace

HARD_COLUMNS = {"difficulty", "id_template", "acq_sid", "acq_unsharp", "acq_unsharp_radius"}


def test_hard_is_deterministic_and_patients_are_independent():
    big = PhantomGenerator(seed=11, size=48, difficulty="hard")
    first = {i: big.render(i, 0) for i in range(12)}
    sub = PhantomGenerator(seed=11, size=48, difficulty="hard")
    for i in (9, 5):  # other order, other patients absent
        for j in range(len(sub.studies(i))):
            assert np.array_equal(sub.render(i, j), big.render(i, j))
        assert np.array_equal(sub.render(i, 0), first[i])
        assert sub.factor_rows(i) == big.factor_rows(i)
    assert not np.array_equal(PhantomGenerator(seed=12, size=48, difficulty="hard").render(5, 0), first[5])
    assert not np.array_equal(PhantomGenerator(seed=11, size=48).render(5, 0), first[5])


def test_standard_phantom_unchanged():
    """Values recorded before the hard phantom existed (seed 0, patient 3, study 1, 48 px)."""
    gen = PhantomGenerator(seed=0, size=48)
    row = gen.factor_rows(3)[1]
    assert row["id_thorax_half_width"] == 0.7595999166743165 and row["id_ctr"] == 0.4526495911412927
    assert row["acq_rotation"] == 1.019936360105119 and row["acq_scale"] == 1.0661198240620706
    assert len(row) == 123 and not HARD_COLUMNS & set(row)
    img = gen.render(3, 1).astype(np.float64)
    assert img.mean() == pytest.approx(0.5030128068857493, abs=1e-5)
    assert img.std() == pytest.approx(0.30604953905583865, abs=1e-5)
    assert "difficulty" not in gen.settings()
    explicit = PhantomGenerator(seed=0, size=48, difficulty="standard")
    assert np.array_equal(explicit.render(3, 1), gen.render(3, 1)) and gen.template_index(3) == -1


def test_hard_factors_in_the_truth_table():
    df = phantom_factors(40, seed=3, difficulty="hard")
    assert HARD_COLUMNS <= set(df.columns)
    assert (df["difficulty"] == "hard").all()
    assert df["id_template"].between(0, N_TEMPLATES - 1).all()
    assert df.groupby("patient_id")["id_template"].nunique().eq(1).all()
    assert df["acq_sid"].between(0.7, 1.3).all() and (df["acq_unsharp"] > 0).mean() > 0.4
    assert PhantomGenerator(seed=3, difficulty="hard").settings()["difficulty"] == "hard"


def test_twins_share_template_anatomy():
    gen = PhantomGenerator(seed=5, size=64, difficulty="hard")
    ids = range(160)
    x = np.stack([gen.patient(i).numeric_vector() for i in ids])
    z = (x - x.mean(0)) / (x.std(0) + 1e-9)
    tpl = np.array([gen.template_index(i) for i in ids])
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    off = ~np.eye(len(tpl), dtype=bool)
    twins = (tpl[:, None] == tpl[None]) & off
    others = (tpl[:, None] != tpl[None])
    assert twins.sum() > 50
    lam = TWIN_LAMBDA  # twins differ by λ·(own − own'), strangers by the blended population spread
    expected = lam ** 2 / ((1 - lam) ** 2 + lam ** 2)
    assert d[twins].mean() < (expected + 0.1) * d[others].mean()
    # still not clones: the deformation and the patient's own seeds tell twins apart
    i, j = np.argwhere(twins)[0]
    a, b = gen.patient(int(i)), gen.patient(int(j))
    assert a.sex == b.sex and a.thorax_half_width != b.thorax_half_width and a.vessel_seed != b.vessel_seed


def test_blend_endpoints():
    gen = PhantomGenerator(seed=1, difficulty="hard")
    own, tpl = gen.template(0), gen.template(1)
    assert blend_anatomy(own, tpl, 1.0).ctr == pytest.approx(own.ctr)
    assert blend_anatomy(own, tpl, 0.0).ctr == pytest.approx(tpl.ctr)
    with pytest.raises(ValueError, match="lambda"):
        blend_anatomy(own, tpl, 1.5)


def test_hard_marks_are_rare():
    df = phantom_factors(300, seed=2, difficulty="hard").groupby("patient_id").first()
    std = phantom_factors(300, seed=2).groupby("patient_id").first()
    assert 0.68 < (df["id_n_marks"] == 0).mean() < 0.88
    assert (std["id_n_marks"] == 0).mean() < 0.6


def test_unsharp_strength_zero_is_a_no_op():
    a = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert unsharp_mask(a, 0.0, 6.0) is a
    assert not np.array_equal(unsharp_mask(a, 1.0, 6.0), a)
    gen = PhantomGenerator(seed=4, size=48, difficulty="hard")
    spec = gen.studies(0)[0]
    off = gen.render_spec(dataclasses.replace(spec, unsharp=0.0, unsharp_radius=5.0))
    assert np.array_equal(off, gen.render_spec(dataclasses.replace(spec, unsharp=0.0, unsharp_radius=0.0)))
    assert not np.array_equal(off, gen.render_spec(dataclasses.replace(spec, unsharp=1.0, unsharp_radius=5.0)))


def _store_pixels(ws: Workspace, size: int) -> tuple[np.ndarray, object]:
    m = load_manifest(ws.manifest_path)
    store = ImageStore(ws.images_path(size), m)
    return np.stack([store.get(iid) for iid in m["image_id"]]), m


def test_prepare_hard_round_trips(tmp_path):
    root = tmp_path / "ws"
    args = ["prepare", "--dataset", "phantom", "--patients", "3", "--seed", "6", "--size", "32",
            "--workspace", str(root), "--workers", "1", "--quiet"]
    assert main([*args, "--difficulty", "hard"]) == 0
    ws = Workspace(root)
    assert ws.info()["options"]["difficulty"] == "hard" and phantom_difficulty(ws.info()["options"]) == "hard"
    pixels, m = _store_pixels(ws, 32)
    row = m.iloc[2]
    hard = letterbox(render_image(6, int(row["phantom_patient"]), int(row["phantom_study"]), 32, "hard"), 32)
    assert np.abs(pixels[2] - hard / 255.0).max() < 1e-6
    # the workspace remembers: a resume renders nothing and keeps the same pixels
    again = prepare_workspace(ws, "phantom", size=32, workers=1, progress=False, **ws.info()["options"])
    assert again.n_new == 0 and np.array_equal(_store_pixels(ws, 32)[0], pixels)
    # the app's recomputed ground truth is that of the hard phantom
    from gan.views import workspace_factors

    factors = workspace_factors(ws, m)
    assert "hard phantom" in factors.note and (factors.table["difficulty"] == "hard").all()
    # the same ids and paths at the standard difficulty are other pixels: the store is rebuilt, not reused
    assert main(args) == 0
    assert "difficulty" not in ws.info()["options"]
    standard, _ = _store_pixels(ws, 32)
    assert standard.shape == pixels.shape and not np.array_equal(standard, pixels)


def test_write_hard_dataset(tmp_path):
    out = write_phantom_dataset(tmp_path / "ds", 2, seed=1, size=32, workers=1, progress=False, difficulty="hard")
    assert json.loads((out / "phantom_settings.json").read_text())["difficulty"] == "hard"
    import pandas as pd
    assert HARD_COLUMNS <= set(pd.read_parquet(out / "phantom_factors.parquet").columns)


def test_bad_difficulty_raises(tmp_path):
    with pytest.raises(ValueError, match="unknown phantom difficulty 'extreme'"):
        PhantomGenerator(difficulty="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="choose one of standard, hard"):
        render_image(0, 0, 0, 32, difficulty="Hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown phantom difficulty"):
        prepare_workspace(tmp_path / "ws", "phantom", size=32, progress=False, patients=2, difficulty="x")
    with pytest.raises(ValueError, match="unknown phantom difficulty"):
        write_phantom_dataset(tmp_path / "ds", 1, size=32, progress=False, difficulty="x")  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "phantom", "--workspace", str(tmp_path / "w"), "--difficulty", "x"])


def test_a_tiny_training_run_learns_above_chance_on_the_hard_phantom(tmp_path):
    import torch

    from reid_core.metrics import retrieval_metrics
    from reid_core.model import Embedder, EmbedderConfig
    from reid_core.train import TrainConfig, train_embedder
    from reid_core.train.validate import embed_rows

    prepare_workspace(tmp_path / "ws", "phantom", size=32, workers=1, progress=False, patients=24, seed=0,
                      difficulty="hard")
    ws = Workspace(tmp_path / "ws")
    cfg = TrainConfig(model=EmbedderConfig(backbone="resnet10t", embedding_dim=16), batch_size=16, m_per_patient=4,
                      max_steps=150, val_every=150, warmup_steps=5, lr=2e-3, num_workers=0, log_every=50,
                      early_stop_patience=None, loss="multi_similarity", image_size=32)
    manifest = load_manifest(ws.manifest_path)
    # the training patients' films: only a model that reads identity through the hard nuisance (processing,
    # collimation, devices) puts a film next to another film of its own patient
    seen = manifest[manifest["split"] == "train"]
    rows, labels = seen["cache_row"].to_numpy(), seen["patient_id"].to_numpy()

    def p_at_1(model: torch.nn.Module) -> float:
        emb = embed_rows(model, ws.images_path(32), rows, size=32, device=torch.device("cpu"))
        return retrieval_metrics(emb, labels, ks=(1,))["precision_at_1"]

    torch.manual_seed(cfg.seed)
    untrained = p_at_1(Embedder(cfg.model))
    trained = p_at_1(train_embedder(ws, cfg, progress=False).model)
    per_patient = seen.groupby("patient_id").size()
    chance = float(((per_patient - 1) * per_patient).sum() / per_patient.sum() / (len(seen) - 1))
    assert trained > max(untrained + 0.05, 2.5 * chance), (trained, untrained, chance)
