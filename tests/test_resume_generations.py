"""The resume state keeps the last good generation: a torn newest state falls back to the one before it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from reid_core.errors import CheckpointError
from reid_core.train.generations import PREV_SUFFIX, has_state, load_newest_state, save_state_generation


def _state(step: int) -> dict:
    return {"step": step, "weights": torch.full((64,), float(step))}


def test_each_save_keeps_the_one_before(tmp_path):
    assert not has_state(tmp_path, "state")
    for step in (1, 2, 3):
        save_state_generation(tmp_path, "state", _state(step))
    assert has_state(tmp_path, "state")
    assert load_newest_state(tmp_path, "state")["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors",
                                                          "state_prev.json", "state_prev.safetensors"]


def test_a_torn_newest_state_falls_back_to_the_previous_generation(tmp_path):
    save_state_generation(tmp_path, "state", _state(1))
    save_state_generation(tmp_path, "state", _state(2))
    weights = tmp_path / "state.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])  # a kill between the two replaces of a save, or a bad disk
    restored = load_newest_state(tmp_path, "state")
    assert restored["step"] == 1 and torch.equal(restored["weights"], torch.full((64,), 1.0))
    # the next save must not copy the torn state over the good one
    save_state_generation(tmp_path, "state", _state(3))
    assert load_newest_state(tmp_path, "state")["step"] == 3
    (tmp_path / "state.json").unlink()
    assert load_newest_state(tmp_path, "state")["step"] == 1


def test_a_save_killed_before_its_replace_keeps_both_generations(tmp_path, monkeypatch):
    save_state_generation(tmp_path, "state", _state(1))
    save_state_generation(tmp_path, "state", _state(2))
    real_replace, calls = os.replace, []

    def dies_at_the_new_state(src, dst):
        calls.append(str(dst))
        if str(dst).endswith("state.safetensors") and len(calls) > 2:  # after the copy to state_prev
            raise OSError("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_at_the_new_state)
    with pytest.raises(OSError):
        save_state_generation(tmp_path, "state", _state(3))
    monkeypatch.undo()
    assert load_newest_state(tmp_path, "state")["step"] == 2  # state untouched, state_prev now also step 2


def test_without_a_previous_generation_the_newest_error_is_raised(tmp_path):
    save_state_generation(tmp_path, "state", _state(1))
    (tmp_path / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="state.safetensors"):
        load_newest_state(tmp_path, "state")
    assert not (tmp_path / f"state{PREV_SUFFIX}.json").exists()


def test_a_resume_state_from_before_generations_still_loads(tmp_path):
    from reid_core.checkpoint import save_state

    save_state(tmp_path, "state", _state(7))  # the committed training/gan_resume layout: one pair
    assert has_state(tmp_path, "state") and load_newest_state(tmp_path, "state")["step"] == 7


# ------------------------------------------------------------------ one resume layer for every trainer
def test_every_trainer_tags_its_state_and_refuses_another_trainers(tmp_path):
    from gan.cae.config import RESUMABLE_CHANGES as CAE_RESUMABLE, CaeTrainConfig
    from gan.resume import gan_resume
    from reid_core.errors import TrainingError
    from reid_core.train.state import ResumeFolder, embedder_resume, state_kind

    cae = ResumeFolder(tmp_path / "gan" / "resume", "autoencoder", CaeTrainConfig, CAE_RESUMABLE)
    assert not cae.exists()
    cae.save({"progress": {"step": 3}, "config": CaeTrainConfig().to_dict()})
    assert cae.exists() and cae.load()["run_kind"] == "autoencoder" and cae.load()["progress"]["step"] == 3
    with pytest.raises(TrainingError, match="holds an autoencoder run.*cxr-reid train-cae"):
        gan_resume(tmp_path / "gan").load()
    emb = embedder_resume(tmp_path / "embedder")
    emb.save({"model": {}, "config": {}})
    assert state_kind(emb.load()) == "embedder"
    # states written before the tag are recognised by their shape
    assert state_kind({"objective": "autoencoder", "engine": {}}) == "autoencoder"
    assert state_kind({"engine": {}, "gan": {}}) == "gan" and state_kind({"model": {}, "objective": []}) == "embedder"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "G_ema.safetensors").write_bytes(b"x")
    ResumeFolder(tmp_path / "out" / "resume", "gan", CaeTrainConfig, frozenset()).start_over(
        tmp_path / "out", ["G_ema.safetensors", "missing.json"])
    assert list((tmp_path / "out").iterdir()) == []


def test_the_committed_generator_state_is_an_autoencoder_run_of_this_version():
    from gan.cae.config import RESUMABLE_CHANGES as CAE_RESUMABLE, CaeTrainConfig

    from reid_core.train.state import ResumeFolder

    folder = Path(__file__).resolve().parent.parent / "training" / "gan_resume"
    state = ResumeFolder(folder, "autoencoder", CaeTrainConfig, CAE_RESUMABLE).load()
    assert state["progress"]["step"] > 0 and CaeTrainConfig.from_dict(state["config"]).res == 64
