"""Checkpoints: exact round trips, atomic writes, tamper detection, no pickle, bit-identical training resume."""
from __future__ import annotations

import copy
import json
import os
import pickle
import random
import struct

import numpy as np
import pytest
import torch
from torch import nn

from reid_core import checkpoint as ckpt
from reid_core.checkpoint import (
    FORMAT_VERSION, load_checkpoint, load_embedder, load_state, read_checkpoint_meta, save_checkpoint,
    save_embedder, save_state,
)
from reid_core.errors import CheckpointError, CxrReidError
from exact_compare import assert_same


def sample_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=g),
        "w64": torch.randn(5, generator=g, dtype=torch.float64),
        "half": torch.randn(2, 2, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.randint(0, 255, (7,), generator=g, dtype=torch.uint8),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(4, 6, generator=g).t(),  # non-contiguous
    }


@pytest.fixture()
def saved(tmp_path):
    tensors = sample_tensors()
    save_checkpoint(tmp_path, tensors, {"epoch": 3, "note": "ünïcode", "nested": {"b": [1, 2.5, None]}})
    return tmp_path, tensors


# --------------------------------------------------------------------------- generic checkpoint

def test_round_trip_is_exact(saved):
    directory, tensors = saved
    out, meta = load_checkpoint(directory)
    assert meta == {"epoch": 3, "note": "ünïcode", "nested": {"b": [1, 2.5, None]}}
    assert set(out) == set(tensors)
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v), k
    assert read_checkpoint_meta(directory) == meta


def test_layout_json_sorted_with_version_and_hash(saved):
    directory, _ = saved
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]  # no temp files left
    text = (directory / "config.json").read_text("utf-8")
    record = json.loads(text)
    assert text == json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert record["format_version"] == FORMAT_VERSION
    import hashlib
    assert record["weights"]["sha256"] == hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def test_named_checkpoints_share_a_folder(tmp_path):
    save_checkpoint(tmp_path, {"a": torch.ones(2)}, {"which": "G_ema"}, name="G_ema")
    out, meta = load_checkpoint(tmp_path, "G_ema")
    assert meta == {"which": "G_ema"} and torch.equal(out["a"], torch.ones(2))
    with pytest.raises(CheckpointError, match="describes 'G_ema.safetensors'"):
        load_checkpoint(tmp_path, "model")


def test_crash_before_replace_keeps_previous_checkpoint(saved, monkeypatch):
    directory, tensors = saved

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(directory, sample_tensors(seed=1), {"epoch": 4})
    monkeypatch.undo()
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]
    out, meta = load_checkpoint(directory)
    assert meta["epoch"] == 3 and torch.equal(out["w"], tensors["w"])


def test_crash_between_the_two_replaces_is_detected(saved, monkeypatch):
    directory, _ = saved
    real_replace, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError):
        save_checkpoint(directory, sample_tensors(seed=1), {"epoch": 4})
    monkeypatch.undo()
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]
    with pytest.raises(CheckpointError):  # new weights, old record: refused, never silently mixed
        load_checkpoint(directory)


def test_truncated_and_tampered_weights_raise(saved):
    directory, _ = saved
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(directory)
    tampered = bytearray(data)
    tampered[-3] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_checkpoint(directory)


def test_missing_files_invalid_json_and_newer_format_raise(saved, tmp_path_factory):
    directory, _ = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path_factory.mktemp("empty"))
    record = (directory / "config.json").read_text()
    (directory / "config.json").write_text(record[:-20])
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(directory)
    newer = json.loads(record)
    newer["format_version"] = FORMAT_VERSION + 1
    (directory / "config.json").write_text(json.dumps(newer))
    with pytest.raises(CheckpointError, match="newer cxr-reid"):
        load_checkpoint(directory)
    (directory / "config.json").write_text(record)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file not found") as info:
        load_checkpoint(directory)
    assert isinstance(info.value, CxrReidError)


def test_bad_meta_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="plain JSON"):
        save_checkpoint(tmp_path / "x", {"a": torch.ones(1)}, {"loss": float("nan")})
    with pytest.raises(ValueError, match="plain JSON"):
        save_checkpoint(tmp_path / "x", {"a": torch.ones(1)}, {"path": tmp_path})
    assert not (tmp_path / "x").exists()


def test_files_are_safetensors_and_loading_never_unpickles(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c", sample_tensors(), {"k": 1})
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_state(tmp_path / "c", "resume", {"optimizer": opt.state_dict(), "rng": torch.get_rng_state()})
    for name in ("model.safetensors", "resume.safetensors"):
        data = (tmp_path / "c" / name).read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        assert data[8:9] == b"{" and json.loads(data[8:8 + header_len])  # a JSON header, then raw bytes
        assert not data.startswith((b"\x80", b"PK"))  # neither a pickle nor a torch.save zip

    def forbidden(*a, **k):
        raise AssertionError("unpickling is forbidden")

    for mod, attr in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(mod, attr, forbidden)
    load_checkpoint(tmp_path / "c")
    assert load_state(tmp_path / "c", "resume")["optimizer"]["state"][0]["step"] == 1


# --------------------------------------------------------------------------- embedder

@pytest.fixture(scope="module")
def embedder():
    from reid_core.model import Embedder
    torch.manual_seed(0)
    model = Embedder(backbone="resnet10t", embedding_dim=16, pooling="attention", head_hidden=32)
    torch.nn.init.normal_(model.pool.score.weight, std=0.5)
    return model.eval()


def test_embedder_round_trip(tmp_path, embedder, monkeypatch):
    save_embedder(tmp_path, embedder, extra_meta={"epoch": 7})
    meta = read_checkpoint_meta(tmp_path)
    assert meta["kind"] == "embedder" and meta["extra"] == {"epoch": 7} and meta["num_features"] == 512
    assert meta["embedder"] == embedder.config.to_dict()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    loaded = load_embedder(tmp_path)
    assert not loaded.training and loaded.config == embedder.config
    for k, v in embedder.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(loaded(x), embedder(x))


def test_embedder_fp16_storage_restores_float32(tmp_path, embedder):
    full = save_embedder(tmp_path / "fp32", embedder)
    half = save_embedder(tmp_path / "fp16", embedder, dtype=torch.float16)
    assert half.weights.stat().st_size < 0.6 * full.weights.stat().st_size
    loaded = load_embedder(tmp_path / "fp16")
    ref = embedder.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == ref[k].dtype, k  # float32 back (and int64 counters untouched)
        torch.testing.assert_close(v, ref[k], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="overflows float16"):
        save_checkpoint(tmp_path / "big", {"x": torch.tensor([1e6])}, {}, dtype=torch.float16)


def test_embedder_key_mismatch_names_the_keys(tmp_path, embedder):
    save_embedder(tmp_path, embedder)
    tensors, meta = load_checkpoint(tmp_path)
    del tensors["pool.score.weight"]
    tensors["head.9.weight"] = torch.zeros(1)
    save_checkpoint(tmp_path, tensors, meta)
    with pytest.raises(CheckpointError, match=r"(?s)missing keys \['pool.score.weight'\].*head.9.weight"):
        load_embedder(tmp_path)


# --------------------------------------------------------------------------- training-resume state

class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def make_run(kind: str, seed: int):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    if kind == "lambda":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 4))
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4)
    return model, opt, sched


def train_steps(model, opt, sched, np_rng, n):
    """Uses all three RNGs: torch (data, dropout), numpy (noise) and python's random (batch size)."""
    model.train()
    for _ in range(n):
        b = random.randint(2, 5)
        x = torch.randn(b, 6) + torch.from_numpy(np_rng.normal(size=(b, 6)).astype(np.float32))
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def capture(model, opt, sched, np_rng, step):
    """Deep copy: state dicts alias the live parameters and optimizer buffers."""
    return copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": step, "rng": {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state,
                                  "python": random.getstate(), "numpy_legacy": np.random.get_state()}})


@pytest.mark.parametrize("kind", ["lambda", "cosine"])
def test_optimizer_scheduler_rng_round_trip_and_bit_identical_resume(tmp_path, kind):
    model, opt, sched = make_run(kind, seed=0)
    random.seed(0)
    np.random.seed(0)
    np_rng = np.random.default_rng(0)
    train_steps(model, opt, sched, np_rng, 3)
    state = capture(model, opt, sched, np_rng, step=3)
    save_state(tmp_path, "resume", state)
    train_steps(model, opt, sched, np_rng, 4)
    expected = [p.detach().clone() for p in model.parameters()]

    restored = load_state(tmp_path, "resume")
    assert_same(restored, state)  # exact: int keys, tuples (betas, random state), dtypes, values
    assert isinstance(restored["optimizer"]["param_groups"][0]["betas"], tuple)

    model2, opt2, sched2 = make_run(kind, seed=123)  # different init, fresh objects
    model2.load_state_dict(restored["model"])
    opt2.load_state_dict(restored["optimizer"])
    sched2.load_state_dict(restored["scheduler"])
    torch.set_rng_state(restored["rng"]["torch"])
    random.setstate(restored["rng"]["python"])
    np_rng2 = np.random.default_rng()
    np_rng2.bit_generator.state = restored["rng"]["numpy"]
    train_steps(model2, opt2, sched2, np_rng2, 4)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_state_handles_special_values(tmp_path):
    state = {
        7: "int key", (1, "a"): [1.5, float("inf"), float("-inf"), float("nan")], "none": None,
        "np": {"f32": np.float32(0.1), "i64": np.int64(-3), "b": np.bool_(True),
               "arr": np.arange(6, dtype=np.uint32).reshape(2, 3), "empty": np.zeros((0, 2))},
        "big": 2**100, "nested": ({"t": torch.tensor([1, 2], dtype=torch.int16)}, [torch.ones(0)]),
    }
    save_state(tmp_path, "misc", state)
    assert_same(load_state(tmp_path, "misc"), state)
    assert sorted(os.listdir(tmp_path)) == ["misc.json", "misc.safetensors"]


def test_state_rejects_unsupported_values_and_reserved_names(tmp_path):
    with pytest.raises(TypeError, match=r"object.*'opt/fn'"):
        save_state(tmp_path, "resume", {"opt": {"fn": object()}})
    with pytest.raises(ValueError, match="overwrite the embedder"):
        save_state(tmp_path, "config", {})
    with pytest.raises(ValueError, match="plain file stem"):
        save_state(tmp_path, "../escape", {})
    save_checkpoint(tmp_path, {"a": torch.ones(1)}, {"kind": "other"}, name="resume", meta_name="resume")
    with pytest.raises(CheckpointError, match="not a training-state"):
        load_state(tmp_path, "resume")
    assert ckpt.load_checkpoint(tmp_path, "resume", meta_name="resume")[1] == {"kind": "other"}
