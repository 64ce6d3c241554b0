"""Training: config, augmentation, sampler, refusals, losses, learning, checkpoints, CLI (exact resume:
test_run_loop.py)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal

import numpy as np
import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from reid_core.checkpoint import load_embedder, read_checkpoint_meta
from reid_core.errors import CxrReidError, TrainingError
from reid_core.model import Embedder
from reid_core.train import AugmentConfig, TrainConfig, load_config, train_embedder
from reid_core.train import loop as loop_module
from reid_core.train.augment import augment_batch
from reid_core.train.cli import add_train_arguments, run_train_command
from reid_core.train.data import load_training_data
from reid_core.train.runlog import read_jsonl
from reid_core.train.sampler import PatientBatchSampler
from reid_core.train.state import embedder_resume
from reid_core.train.validate import validate
from train_fixtures import make_workspace, tiny_config



# --------------------------------------------------------------------------- config

def test_config_round_trips_and_rejects_unknown_keys(tmp_path):
    cfg = tiny_config(loss="multi_similarity", augment=AugmentConfig(degrees=0.0))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig key.*'lrr'"):
        TrainConfig.from_dict({"lrr": 1e-3})
    with pytest.raises(ValueError, match=r"augment\.hflipp"):
        TrainConfig.from_dict({"augment": {"hflipp": True}})
    with pytest.raises(ValueError, match="embeding_dim"):
        TrainConfig.from_dict({"model": {"embeding_dim": 8}})
    with pytest.raises(ValueError, match="multiple of m_per_patient"):
        TrainConfig(batch_size=30)
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"lr": 1e-3, "model": {"embedding_dim": 32}}))
    loaded = load_config(path)
    assert loaded.lr == 1e-3 and loaded.model.embedding_dim == 32 and loaded.loss == "triplet"
    path.write_text(json.dumps({"epochs": "ten"}))
    with pytest.raises(TrainingError, match="epochs must be of type int"):
        load_config(path)
    path.write_text("{not json")
    with pytest.raises(TrainingError, match="not valid JSON"):
        load_config(path)


def test_overrides_are_parsed_and_type_checked():
    cfg = TrainConfig().with_overrides(["lr=1e-3", "model.embedding_dim=32", "augment.hflip=true",
                                        "max_steps=null", "loss=contrastive_xbm", "margin=1"])
    assert (cfg.lr, cfg.model.embedding_dim, cfg.augment.hflip, cfg.max_steps, cfg.loss, cfg.margin) == (
        1e-3, 32, True, None, "contrastive_xbm", 1.0)
    for bad, message in [("lrr=1", "unknown key 'lrr'"), ("lr=fast", "lr must be of type float"),
                         ("epochs=1.5", "epochs must be of type int"), ("loss=arcface", "must be one of"),
                         ("lr.x=1", "not a nested config"), ("lr", "key=value"),
                         ("model.embedding_dim=1000", "embedding_dim must be an integer in 4..128")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig().with_overrides([bad])


# --------------------------------------------------------------------------- augmentation and sampler

def test_augmentation_keeps_shape_and_range_is_reproducible_and_identity_at_zero():
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig(degrees=10, translate=0.1, scale=0.1, brightness=0.2, contrast=0.2, gamma=0.3,
                        noise_std=0.05, blur_sigma=1.0)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, x)
    zero = AugmentConfig(degrees=0, translate=0, scale=0, brightness=0, contrast=0, gamma=0, noise_std=0,
                         blur_sigma=0)
    assert torch.equal(augment_batch(x, zero, torch.Generator().manual_seed(1)), x)
    assert torch.equal(augment_batch(x, AugmentConfig(enabled=False), torch.Generator()), x)
    assert AugmentConfig().hflip is False and TrainConfig().augment.hflip is False
    flipped = augment_batch(x, AugmentConfig(**{**zero.__dict__, "hflip": True}), torch.Generator().manual_seed(3))
    mirrored = [torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x)]
    same = [torch.equal(f, o) for f, o in zip(flipped, x)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored)


def test_sampler_is_deterministic_m_per_patient_and_sharded_by_rank():
    labels = np.repeat(np.arange(20), [1] + [4] * 10 + [9] + [2] * 8)  # patient 0 has a single image
    s = PatientBatchSampler(labels, m=4, batch_size=16, seed=7)
    batches = s.epoch_batches(0)
    assert len(batches) == len(s) > 0 and s.n_patients == 19
    for b in batches:
        assert len(b) == 16 and 0 not in labels[b]
        assert all(c % 4 == 0 for c in np.unique(labels[b], return_counts=True)[1])
    assert all(np.array_equal(a, b) for a, b in zip(batches, s.epoch_batches(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, s.epoch_batches(1)))
    r0, r1 = (PatientBatchSampler(labels, 4, 16, seed=7, rank=r, world_size=2).epoch_batches(0) for r in (0, 1))
    assert len(r0) == len(r1) == len(batches) // 2
    assert all(np.array_equal(a, b) for a, b in zip(r0, batches[0::2]))
    assert all(np.array_equal(a, b) for a, b in zip(r1, batches[1::2]))


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("counts, message", [
    ([], "no images"),
    ([5], "single patient"),
    ([1, 1, 1, 1, 1, 1], "no patient of the train split has 2 or more images"),
])
def test_refuses_data_that_cannot_teach_identity(tmp_path, counts, message):
    ws = make_workspace(tmp_path / "ws", per_patient=counts, val_every_nth=None)
    with pytest.raises(TrainingError, match=message):
        train_embedder(ws, tiny_config(), progress=False)
    assert not ws.embedder_dir.exists()



def test_normal_only_training_drops_abnormal_train_films_but_keeps_val(tmp_path):
    from reid_core.data.manifest import load_manifest, save_manifest

    ws = make_workspace(tmp_path / "ws", n_patients=8, per_patient=3)  # P003, P007 in val
    m = load_manifest(ws.manifest_path)
    abnormal = m["image_id"].isin(["p0_1", "p1_1", "p1_2", "p3_0"])  # P001 keeps 1 normal film; P003 is val
    m.loc[abnormal, "findings"] = "Effusion"
    save_manifest(m, ws.manifest_path)
    store_ids = m.set_index("cache_row")["image_id"]
    every, normal = load_training_data(ws, None, 0), load_training_data(ws, None, 0, normal_only=True)
    assert set(store_ids[every.train_rows]) - set(store_ids[normal.train_rows]) == {"p0_1", "p1_0", "p1_1", "p1_2"}
    assert (every.n_train_patients, normal.n_train_patients) == (6, 5)  # P001: one normal film, no positive pair
    assert np.array_equal(every.val_rows, normal.val_rows) and "p3_0" in set(store_ids[normal.val_rows])
    m.loc[m["split"] == "train", "findings"] = "Effusion"  # no normal train film left: refused, saying why
    save_manifest(m, ws.manifest_path)
    with pytest.raises(TrainingError, match="train_findings=normal counts only.*No Finding"):
        load_training_data(ws, None, 0, normal_only=True)
    assert TrainConfig().with_overrides(["train_findings=normal"]).train_findings == "normal"
    with pytest.raises(ValueError, match="train_findings"):
        TrainConfig.from_dict({"train_findings": "abnormal"})

# --------------------------------------------------------------------------- losses

@pytest.mark.parametrize("loss, miner", [("triplet", "semihard"), ("triplet", "hard"), ("triplet", "all"),
                                         ("multi_similarity", "semihard"), ("contrastive_xbm", "semihard"),
                                         ("proxy_anchor", "semihard"), ("cosface", "semihard")])
def test_every_loss_trains_a_step(tmp_path, loss, miner):
    ws = make_workspace(tmp_path / "ws", n_patients=8, val_every_nth=None)
    result = train_embedder(ws, tiny_config(loss=loss, miner=miner, max_steps=1), progress=False)
    assert result.steps == 1 and result.finished and result.val_source == "train_subset"
    assert np.isfinite(read_jsonl(ws.embedder_dir / "train_log.jsonl")[0]["loss"])


# --------------------------------------------------------------------------- learning and artefacts

def test_training_learns_and_writes_a_loadable_checkpoint(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    cfg = tiny_config(max_steps=60, val_every=30, log_every=5, warmup_steps=3, miner="all")
    data = load_training_data(ws, None, 0)
    torch.manual_seed(cfg.seed)
    untrained = validate(Embedder(cfg.model), data.store_path, data.val_rows, data.val_labels, size=32,
                         device=torch.device("cpu"))
    result = train_embedder(ws, cfg, progress=False)
    out = ws.embedder_dir
    records = read_jsonl(out / "train_log.jsonl")
    losses = [r["loss"] for r in records if r["event"] == "train"]
    vals = [r for r in records if r["event"] == "val"]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
    assert result.best_metrics["precision_at_1"] > untrained["precision_at_1"] + 0.15
    assert [v["step"] for v in vals] == [30, 60] and result.val_source == "val"
    assert {"lr", "images_per_sec", "data_wait_frac", "epoch"} <= set(records[0])
    model = load_embedder(out)
    meta = read_checkpoint_meta(out)["extra"]
    assert meta["train_config"]["model"]["backbone"] == "resnet10t" and meta["train_config"]["image_size"] == 32
    assert meta["val_metrics"]["map_at_r"] == pytest.approx(result.best_metrics["map_at_r"])
    assert meta["step"] == result.best_step
    x = torch.rand(2, 1, 32, 32)
    assert model.embed(x).shape == (2, 16)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["images_per_sec"] > 0 and metrics["best"]["n_queries"] == 48
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 60
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    again = train_embedder(ws, cfg, progress=False)  # finished: nothing to do
    assert again.steps == 60 and again.model is None and again.resumed_from == 60


def test_sigint_saves_resume_state_and_raises(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_patients=8)
    original = loop_module._Trainer.train_step

    def step_then_interrupt(self, micro):
        out = original(self, micro)
        if self.progress.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives during step 2
        return out

    monkeypatch.setattr(loop_module._Trainer, "train_step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_embedder(ws, tiny_config(max_steps=5), progress=False)
    assert embedder_resume(ws.embedder_dir).load()["progress"]["step"] == 2
    assert signal.getsignal(signal.SIGINT) == before


def test_early_stopping_and_incompatible_resume(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_patients=8)
    monkeypatch.setattr(loop_module, "validate", lambda *a, **k: {"map_at_r": 0.5, "precision_at_1": 0.5})
    result = train_embedder(ws, tiny_config(max_steps=20, val_every=1, early_stop_patience=2), progress=False)
    assert result.stopped_early and result.steps == 3 and result.best_step == 1
    with pytest.raises(TrainingError, match=r"different config \(lr: 0.002 → 0.001\).*--no-resume"):
        train_embedder(ws, tiny_config(max_steps=20, lr=1e-3), progress=False)
    fresh = train_embedder(ws, tiny_config(max_steps=2, lr=1e-3), resume=False, progress=False)
    assert fresh.resumed_from is None and fresh.steps == 2


def test_validation_falls_back_to_train_patients_with_a_warning(tmp_path, caplog):
    ws = make_workspace(tmp_path / "ws", n_patients=8, val_every_nth=None)
    with caplog.at_level(logging.WARNING):
        result = train_embedder(ws, tiny_config(max_steps=1, image_size=16), progress=False)
    assert result.val_source == "train_subset" and "TRAIN patients" in caplog.text
    assert read_checkpoint_meta(ws.embedder_dir)["embedder"]["image_size"] == 16  # resized from the 32 px store


# --------------------------------------------------------------------------- CLI

def _args(*argv: str) -> argparse.Namespace:
    return add_train_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_cli_functions(tmp_path, capsys):
    ws = make_workspace(tmp_path / "ws", n_patients=8)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(tiny_config().to_dict()))
    assert run_train_command(_args("--workspace", str(ws.root), "--config", str(cfg_file), "--set", "lr=0.01",
                                   "--max-steps", "7", "--print-config")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lr"] == 0.01 and printed["max_steps"] == 7 and printed["model"]["backbone"] == "resnet10t"
    with pytest.raises(CxrReidError, match="unknown key 'lrr'"):
        run_train_command(_args("--workspace", str(ws.root), "--set", "lrr=1"))
    assert run_train_command(_args("--workspace", str(ws.root), "--config", str(cfg_file), "--max-steps", "2",
                                   "--no-resume", "--quiet", "--device", "cpu")) == 0
    assert "finished at step 2/2" in capsys.readouterr().out
    assert (ws.embedder_weights_path).exists()
