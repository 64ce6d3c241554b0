"""GAN training: config, outputs, refusals, unconditional mode, CLI and 2-process DDP (exact resume:
test_run_loop.py)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reid_core  # noqa: F401  (before timm)
from ddp_helpers import run_two_ranks_and_compare
from gan.cli import add_train_gan_arguments, gan_config_from_args, run_train_gan_command
from gan import train as gan_train
from gan.config import GanArchOverrides
from gan.data import RealSampler
from gan.resume import gan_resume
from gan.io import load_generator
from gan.train import measure_s_per_kimg, resolve_gan_config, train_gan
from gan.train_config import GanTrainConfig
from reid_core.checkpoint import load_checkpoint
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable
from reid_core.errors import TrainingError, WorkspaceError
from reid_core.train.runlog import read_jsonl
from reid_core.workspace import Workspace
from trainer_cases import C_DIM, gan_workspace
from trainer_cases import gan_config as tiny

REPO = Path(__file__).resolve().parents[1]



# --------------------------------------------------------------------------- config

def test_config_round_trips_overrides_and_refusals():
    cfg = tiny(betas=(0.0, 0.9), arch={"conv_clamp": 256}, r1_gamma=0.5)
    again = GanTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.betas == (0.0, 0.9) and again.resolution == 16
    assert GanTrainConfig(preset="64").resolution == 64
    with pytest.raises(ValueError, match=r"unknown GanTrainConfig key.*'lr'"):
        GanTrainConfig.from_dict({"lr": 1e-3})
    with pytest.raises(ValueError, match="unknown GAN preset"):
        GanTrainConfig(preset="512")
    with pytest.raises(ValueError, match="power of two"):
        GanTrainConfig(res=48)
    with pytest.raises(ValueError, match="batch must be of type int"):
        GanTrainConfig.from_dict({"batch": "8"})
    new = cfg.with_overrides(["lr_g=0.002", "arch.mbstd_group_size=2", "preset=64", "r1_gamma=null",
                              "betas=[0.1, 0.95]"])
    assert (new.lr_g, new.arch, new.preset, new.r1_gamma, new.betas) == (
        0.002, GanArchOverrides(conv_clamp=256, mbstd_group_size=2), "64", None, (0.1, 0.95))
    with pytest.raises(ValueError, match="unknown key 'lr'"):
        cfg.with_overrides(["lr=1"])


def test_arch_overrides_are_typed_and_old_dict_records_still_load_and_resume():
    with pytest.raises(ValueError, match=r"unknown key 'arch.c_dim'.*valid keys here: \[.*'conv_clamp'"):
        tiny().with_overrides(["arch.c_dim=3"])  # c_dim comes from the embeddings, resolution from res
    with pytest.raises(ValueError, match="arch.conv_clamp must be of type float"):
        tiny().with_overrides(["arch.conv_clamp=high"])
    with pytest.raises(ValueError, match=r"unknown GanArchOverrides key.*'arch.resolution'"):
        GanTrainConfig.from_dict({"arch": {"resolution": 32}})
    old = {**tiny().to_dict(), "arch": {"mbstd_group_size": 2}}  # how runs before the typed arch wrote it
    cfg = GanTrainConfig.from_dict(old)
    assert cfg.arch == GanArchOverrides(mbstd_group_size=2) and cfg.arch.changes() == {"mbstd_group_size": 2}
    gan_resume(Path("gan")).check_config({**tiny().to_dict(), "arch": {}}, tiny().to_dict())  # an old state resumes
    with pytest.raises(TrainingError, match="arch.mbstd_group_size"):
        gan_resume(Path("gan")).check_config({**tiny().to_dict(), "arch": {}}, cfg.to_dict())
    arch = resolve_gan_config(cfg, c_dim=C_DIM, amp=True)
    assert (arch.mbstd_group_size, arch.conv_clamp, arch.resolution, arch.c_dim) == (2, 256, 16, C_DIM)
    assert resolve_gan_config(tiny(arch={"conv_clamp": 64}), C_DIM, amp=True).conv_clamp == 64
    assert resolve_gan_config(tiny(), C_DIM, amp=False).conv_clamp is None


def test_sampler_covers_every_image_per_epoch_and_splits_ranks():
    whole = [RealSampler(10, 4, seed=3).positions(s) for s in range(5)]  # 20 draws = 2 epochs
    stream = np.concatenate(whole)
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    halves = [np.concatenate([RealSampler(10, 4, 3, rank, 2).positions(s) for rank in (0, 1)]) for s in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(whole, halves))


# --------------------------------------------------------------------------- training and outputs

def test_training_writes_loadable_outputs_and_refuses_changed_resume(tmp_path):
    ws = gan_workspace(tmp_path / "ws")
    result = train_gan(ws, tiny(), progress=False)
    assert result.finished and result.steps == 6 and result.kimg == pytest.approx(0.024)
    out = ws.gan_dir
    tensors, meta = load_checkpoint(out, "G_ema")
    assert meta["kind"] == "gan_generator" and meta["c_dim"] == C_DIM and meta["gan"]["resolution"] == 16
    assert GanTrainConfig.from_dict(meta["train"]) == tiny() and meta["stats"]["step"] == 6
    G = load_generator(out)  # the consumers' loader reads what training writes
    for key, value in G.state_dict().items():
        assert torch.equal(value, tensors[key]) and torch.equal(value, result.engine.G_ema.state_dict()[key])
    assert G(torch.randn(2, G.z_dim), torch.randn(2, C_DIM)).shape == (2, 1, 16, 16)
    with Image.open(out / "samples.png") as im:  # 3 identities × (1 real + 3 samples) at 16 px
        assert im.size == (4 * 16, 3 * 16) and im.mode == "L"
    records = read_jsonl(out / "train_log.jsonl")
    ticks = [r for r in records if r["event"] == "tick"]
    assert [r["step"] for r in ticks] == [2, 4, 6]
    logged = set().union(*ticks)
    for key in ("loss/G", "loss/D", "loss/r1", "loss/pl", "p", "rt", "kimg", "kimg_per_s", "s_per_kimg"):
        assert key in logged, key
    assert [r["step"] for r in records if r["event"] == "snapshot"] == [4, 6]
    run_cfg = json.loads((out / "train_config.json").read_text())
    assert run_cfg["train"] == tiny().to_dict() and run_cfg["c_dim"] == C_DIM
    assert (out / "resume" / "state.json").exists()
    again = train_gan(ws, tiny(), progress=False)  # a finished run returns at once
    assert again.finished and again.engine is None and again.steps == 6
    with pytest.raises(TrainingError, match=r"lr_g: 0\.0025 → 0\.001.*--no-resume"):
        train_gan(ws, tiny(kimg=0.032, lr_g=0.001), progress=False)


def test_missing_or_stale_embeddings_are_refused_unless_unconditional(tmp_path):
    ws = gan_workspace(tmp_path / "ws", embeddings=False)
    with pytest.raises(WorkspaceError, match=r"no identity embeddings.*cxr-reid embed.*--unconditional"):
        train_gan(ws, tiny(), progress=False)
    ids = load_manifest(ws.manifest_path)["image_id"][:-1]
    EmbeddingTable(np.zeros((len(ids), 4), np.float32), ids).save(ws.embeddings_path)
    with pytest.raises(WorkspaceError, match=r"out of date: 1 of 12 images.*cxr-reid embed"):
        train_gan(ws, tiny(), progress=False)
    result = train_gan(ws, tiny(unconditional=True, kimg=0.008, augment=False), progress=False)
    assert result.finished and result.engine.gan_cfg.c_dim == 0
    assert load_generator(ws.gan_dir).c_dim == 0
    with Image.open(ws.gan_dir / "samples.png") as im:
        assert im.size == (4 * 16, 3 * 16)


def test_sigint_saves_the_resume_state_and_raises(tmp_path, monkeypatch):
    ws = gan_workspace(tmp_path / "ws")
    original = gan_train._Session.train_step

    def step_then_interrupt(self, images, positions):
        out = original(self, images, positions)
        if self.progress.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled at once: the loop stops after this step
        return out

    monkeypatch.setattr(gan_train._Session, "train_step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_gan(ws, tiny(), progress=False)
    assert signal.getsignal(signal.SIGINT) == before
    assert gan_resume(ws.gan_dir).load()["progress"]["step"] == 1
    assert (ws.gan_dir / "samples.png").exists() and (ws.generator_weights_path).exists()
    monkeypatch.setattr(gan_train._Session, "train_step", original)
    assert train_gan(ws, tiny(kimg=0.008), progress=False).resumed_from == 1


# --------------------------------------------------------------------------- CLI and benchmark helper

def test_cli_functions(tmp_path, capsys):
    ws = gan_workspace(tmp_path / "ws", embeddings=False)
    parser = add_train_gan_arguments(argparse.ArgumentParser())
    argv = ["--workspace", str(ws.root), "--res", "16", "--preset", "tiny", "--batch", "4", "--kimg", "0.008",
            "--set", "tick_kimg=0.004", "--set", "grid_cols=2", "--unconditional", "--device", "cpu", "--quiet"]
    cfg = gan_config_from_args(parser.parse_args(argv))
    assert (cfg.res, cfg.preset, cfg.batch, cfg.kimg, cfg.unconditional, cfg.grid_cols) == (
        16, "tiny", 4, 0.008, True, 2)
    assert gan_config_from_args(parser.parse_args(["--workspace", "w", "--res", "64"])).preset == "64"
    assert run_train_gan_command(parser.parse_args(argv + ["--print-config"])) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "tiny"
    assert run_train_gan_command(parser.parse_args(argv)) == 0
    assert "finished at 0.008/0.008 kimg (2 steps)" in capsys.readouterr().out
    assert (ws.generator_weights_path).exists()
    with pytest.raises(TrainingError, match="unknown key 'nope'"):
        gan_config_from_args(parser.parse_args(argv + ["--set", "nope=1"]))


def test_measure_s_per_kimg_runs_the_training_step():
    s = measure_s_per_kimg("tiny", 16, 4, steps=2, device="cpu", c_dim=4, warmup=1)
    assert s > 0 and np.isfinite(s)


# --------------------------------------------------------------------------- torchrun DDP

DDP_SCRIPT = textwrap.dedent("""
    import faulthandler; faulthandler.dump_traceback_later(80, exit=True)  # a hang fails, with stacks
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import reid_core
    from safetensors.torch import save_file
    from gan.train import train_gan
    from gan.train_config import GanTrainConfig

    ws, cfg_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    result = train_gan(ws, GanTrainConfig.from_dict(json.load(open(cfg_path))), progress=False)
    e = result.engine
    state = {f"{name}.{k}": v.detach().contiguous().clone()
             for name, net in (("G", e.G), ("D", e.D), ("G_ema", e.G_ema)) for k, v in net.state_dict().items()}
    state["p"] = torch.tensor([e.augment_p])
    save_file(state, os.path.join(out, f"rank{os.environ['RANK']}.safetensors"))
""")


def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    ws = gan_workspace(tmp_path / "ws")
    cfg = tiny(batch=8, kimg=0.032, tick_kimg=0.016, ada_kimg=0.02)  # 4 steps of 4 images per rank
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    run_two_ranks_and_compare(DDP_SCRIPT, [str(ws.root), str(tmp_path / "cfg.json"), str(tmp_path)], tmp_path, 100)
    _, meta = load_checkpoint(ws.gan_dir, "G_ema")
    assert meta["stats"]["world_size"] == 2 and meta["stats"]["step"] == 4
    ticks = [r["step"] for r in read_jsonl(ws.gan_dir / "train_log.jsonl") if r["event"] == "tick"]
    assert ticks == [2, 4]  # rank 0 alone writes the log
