"""The conditional autoencoder (gan.cae): config, pair sampling, the objective on a toy, checkpoints, refusals
(exact resume: test_run_loop.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import reid_core  # noqa: F401  (before timm)
from gan.cae.config import CaeTrainConfig
from gan.cae.data import PairSampler, load_pair_data
from gan.cae.encoder import EncoderConfig, NuisanceEncoder, kl_to_prior
from gan.cae.engine import CaeEngine, other_patient_rows, partner_rows
from gan.cae.io import load_encoder
from gan.cae.train import train_cae
from gan.io import load_generator
from reid_core.data.manifest import load_manifest
from reid_core.embed import EmbeddingTable
from reid_core.errors import CheckpointError, TrainingError
from reid_core.model import Embedder
from reid_core.train.runlog import read_jsonl
from reid_core.typed_config import TypedConfig
from reid_core.workspace import Workspace
from train_fixtures import make_workspace
from trainer_cases import TINY_ARCH, cae_workspace
from trainer_cases import cae_config as tiny

# --------------------------------------------------------------------------- config

def test_config_round_trips_and_refuses_unknown_or_mistyped_values():
    cfg = tiny(betas=(0.5, 0.9))
    assert CaeTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    moved = cfg.with_overrides(["arch.n_dim=8", "id_weight=1", "betas=[0.0, 0.99]", "splits=all"])
    assert moved.arch.n_dim == 8 and moved.id_weight == 1.0 and moved.betas == (0.0, 0.99) and moved.splits == "all"
    assert moved.arch.w_dim == TINY_ARCH.w_dim  # untouched fields of the nested config survive
    with pytest.raises(ValueError, match="unknown key"):
        cfg.with_overrides(["arch.nope=1"])
    with pytest.raises(ValueError, match=r"unknown CaeTrainConfig key.*'learning_rate'.*valid keys"):
        CaeTrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="batch must be of type int"):
        CaeTrainConfig.from_dict({"batch": "16"})
    with pytest.raises(ValueError, match="splits must be one of"):
        CaeTrainConfig.from_dict({"splits": "test"})
    with pytest.raises(ValueError, match="even"):
        tiny(batch=7)
    with pytest.raises(ValueError, match="arch.n_dim"):
        CaeTrainConfig.from_dict({"arch": {"n_dim": 0}})
    with pytest.raises(ValueError, match="key=value"):
        cfg.with_overrides(["kimg"])
    assert issubclass(CaeTrainConfig, TypedConfig)


def test_adversarial_weight_ramps_in():
    cfg = tiny(adv_weight=0.1, adv_start_kimg=10.0, adv_ramp_kimg=10.0)
    assert cfg.adv_scale(9.9) == 0.0
    assert cfg.adv_scale(15.0) == pytest.approx(0.05)
    assert cfg.adv_scale(25.0) == pytest.approx(0.1)
    assert tiny(adv_weight=0.0).adv_scale(100.0) == 0.0
    feat = tiny(feat_weight=2.0, feat_start_kimg=86.0, feat_ramp_kimg=4.0)
    assert feat.feat_scale(85.9) == 0.0 and feat.feat_scale(88.0) == pytest.approx(1.0)
    assert feat.feat_scale(200.0) == pytest.approx(2.0)


def test_feature_loss_is_zero_on_equal_images_and_only_moves_the_render():
    from gan.cae.losses import embedder_features, feature_loss

    torch.manual_seed(0)
    emb = Embedder(backbone="resnet10t", embedding_dim=8, image_size=32).eval().requires_grad_(False)
    target = torch.rand(3, 1, 16, 16) * 2 - 1
    assert len(embedder_features(emb, target)) == 3
    assert feature_loss(emb, target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    x = (target + 0.5 * torch.randn_like(target)).clamp(-1, 1).requires_grad_(True)
    t = target.clone().requires_grad_(True)
    loss = feature_loss(emb, x, t)
    loss.backward()
    assert loss.item() > 1e-3 and x.grad.abs().sum() > 0 and t.grad is None


# --------------------------------------------------------------------------- pairs

def test_pair_sampler_gives_two_distinct_films_of_one_patient_deterministically():
    groups = [np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6, 7, 8]), np.array([9, 10])]
    owner = {int(p): g for g, rows in enumerate(groups) for p in rows}
    s = PairSampler(groups, batch=4, seed=3)
    seen = set()
    for step in range(6):
        pos = s.positions(step)
        assert pos.shape == (4,)
        for a, b in pos.reshape(-1, 2):
            assert a != b and owner[int(a)] == owner[int(b)]
        seen.update(owner[int(p)] for p in pos)
        assert np.array_equal(pos, PairSampler(groups, batch=4, seed=3).positions(step))  # a function of (seed, step)
    assert seen == {0, 1, 2, 3}
    assert partner_rows(6).tolist() == [1, 0, 3, 2, 5, 4]
    assert other_patient_rows(6).tolist() == [2, 3, 4, 5, 0, 1]


def test_encoder_shapes_and_kl():
    E = NuisanceEncoder(EncoderConfig(resolution=16, n_dim=5, channel_base=64, channel_max=16))
    mu, logvar = E(torch.zeros(3, 1, 16, 16))
    assert mu.shape == logvar.shape == (3, 5)
    assert float(kl_to_prior(torch.zeros(2, 5), torch.zeros(2, 5))) == 0.0
    assert float(kl_to_prior(torch.ones(2, 5), torch.zeros(2, 5))) == pytest.approx(2.5)


# --------------------------------------------------------------------------- the objective on a toy

class CentroidEmbedder(nn.Module):
    """Toy 'identity embedder': the unit direction from the image centre to the bright blob's centroid."""

    class config:  # noqa: N801 - mimics Embedder.config
        image_size = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (x - x.mean(dim=(2, 3), keepdim=True)).clamp_min(0) ** 2 + 1e-8
        size = x.shape[-1]
        grid = (torch.arange(size, dtype=x.dtype) + 0.5) / size - 0.5
        cx = (w * grid[None, None, None, :]).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))
        cy = (w * grid[None, None, :, None]).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))
        return nn.functional.normalize(torch.stack([cx, cy], dim=1), dim=1)


def toy_films(n_patients: int, per_patient: int, seed: int = 0):
    """Identity = blob direction θ (c = (cos θ, sin θ)); nuisance = the film's background level. Images in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    images, conds, bright, patient = [], [], [], []
    for p in range(n_patients):
        theta = 2 * math.pi * p / n_patients
        cx, cy = 7.5 + 4.5 * math.cos(theta), 7.5 + 4.5 * math.sin(theta)
        for _ in range(per_patient):
            b = rng.uniform(0.0, 0.5)
            img = b + (1 - b) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)
            images.append(img * 2 - 1)
            conds.append([math.cos(theta), math.sin(theta)])
            bright.append(b)
            patient.append(p)
    return (torch.tensor(np.array(images), dtype=torch.float32)[:, None], torch.tensor(conds, dtype=torch.float32),
            np.array(bright), np.array(patient))


def test_the_objective_learns_identity_swap_on_a_toy():
    torch.manual_seed(0)
    x, c, bright, patient = toy_films(8, 6)
    cfg = tiny(batch=16, lr=0.005, c_noise=0.0, adv_weight=0.0, feat_weight=0.0, id_fraction=0.5, id_weight=1.0,
               arch=TINY_ARCH.with_overrides(["mapping_lr_multiplier=1.0"]))
    engine = CaeEngine(cfg.arch.gan_config(16, 2), EncoderConfig(16, 4, 128, 32), cfg, CentroidEmbedder(),
                       torch.device("cpu"))
    groups = [np.flatnonzero(patient == p) for p in range(8)]
    sampler = PairSampler(groups, cfg.batch, seed=0)
    for step in range(200):
        pos = torch.from_numpy(sampler.positions(step))
        engine.step(x[pos], c[pos], step, step * cfg.batch)
    G, E = engine.G_ema, engine.E_ema
    with torch.no_grad():
        mu, _ = E(x)
        other = (patient + 3) % 8  # swap every film to the identity three patients on
        c_other = c[[int(np.flatnonzero(patient == q)[0]) for q in other]]
        swapped = G(mu, c_other, noise_mode="const")
        angle_err = torch.rad2deg(torch.acos((CentroidEmbedder()(swapped * 0.5 + 0.5) * c_other).sum(1).clamp(-1, 1)))
        to_own = torch.rad2deg(torch.acos((CentroidEmbedder()(swapped * 0.5 + 0.5) * c).sum(1).clamp(-1, 1)))
        out_bright = (swapped * 0.5 + 0.5).flatten(1).median(dim=1).values.numpy()
    # the swap lands on the other identity (directions 135° apart), not on the film's own
    assert float((angle_err < 30).float().mean()) >= 0.8, angle_err
    assert float((to_own < 30).float().mean()) <= 0.1
    # and keeps the film's nuisance: the background level follows the source film
    assert np.corrcoef(out_bright, bright)[0, 1] > 0.7


# --------------------------------------------------------------------------- the trainer on a workspace

@pytest.fixture()
def cae_ws(tmp_path):
    return cae_workspace(tmp_path / "ws")


def test_training_writes_the_pair_and_refuses_a_changed_resume(cae_ws):
    result = train_cae(cae_ws, tiny(), progress=False)
    assert result.finished and result.steps == 6
    for name in ("samples.png", "train_config.json", "train_log.jsonl"):
        assert (cae_ws.gan_dir / name).is_file()
    records = read_jsonl(cae_ws.gan_dir / "train_log.jsonl")
    assert any(r.get("event") == "tick" and "loss/D" in r for r in records)
    assert any("loss/feat" in r for r in records)
    G = load_generator(cae_ws.gan_dir)
    E = load_encoder(cae_ws.gan_dir)
    assert G.z_dim == E.cfg.n_dim == 4 and G.img_resolution == 16
    with pytest.raises(TrainingError, match="different config"):
        train_cae(cae_ws, tiny(kimg=0.096, lr=0.001), progress=False)


def test_a_state_from_before_an_option_existed_resumes_with_its_default(cae_ws):
    from reid_core.checkpoint import load_state, save_state

    cfg = tiny(kimg=0.032, feat_start_kimg=0.0)
    train_cae(cae_ws, cfg, progress=False, stop_after_kimg=0.016)
    folder = cae_ws.gan_dir / "resume"
    state = load_state(folder, "state")
    for key in ("feat_weight", "feat_start_kimg", "feat_ramp_kimg"):
        state["config"].pop(key)
    save_state(folder, "state", state)
    with pytest.raises(TrainingError, match="feat_start_kimg"):  # the old run's default (86) is not 0.0
        train_cae(cae_ws, cfg, progress=False)
    old_defaults = dict(feat_start_kimg=86.0, feat_ramp_kimg=4.0)
    assert train_cae(cae_ws, tiny(kimg=0.032, **old_defaults), progress=False).resumed_from == 2
    state["config"]["no_such_option"] = 1
    save_state(folder, "state", state)
    with pytest.raises(TrainingError, match="does not know"):
        train_cae(cae_ws, tiny(kimg=0.048, **old_defaults), progress=False)


def test_an_ensemble_term_added_to_a_running_job_trains_as_if_configured_from_the_start(cae_ws, tmp_path):
    import shutil

    from reid_core.checkpoint import load_state

    fresh = Workspace(shutil.copytree(cae_ws.root, tmp_path / "fresh"))
    ens = dict(id_ensemble=(str(cae_ws.embedder_dir),), id_ensemble_start_kimg=0.032, id_ensemble_ramp_kimg=0.0)
    train_cae(fresh, tiny(**ens), progress=False)  # 6 steps of 8 images; the term is on in steps 4 and 5
    train_cae(cae_ws, tiny(), progress=False, stop_after_kimg=0.016)  # 2 steps without it
    with pytest.raises(TrainingError, match="id_ensemble_start_kimg"):  # it would have acted before 0.016
        train_cae(cae_ws, tiny(**{**ens, "id_ensemble_start_kimg": 0.008}), progress=False)
    assert train_cae(cae_ws, tiny(**ens), progress=False).resumed_from == 2
    a, b = (load_state(w.gan_dir / "resume", "state")["engine"] for w in (fresh, cae_ws))
    for net in ("G", "E", "D", "G_ema"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    ticks = [r for r in read_jsonl(cae_ws.gan_dir / "train_log.jsonl") if r.get("event") == "tick"]
    assert "loss/id_ensemble" in ticks[-1] and not any("loss/id_ensemble" in r for r in ticks if r["kimg"] <= 0.032)


def test_scheduled_terms_may_change_on_resume_only_while_off():
    saved = tiny(feat_start_kimg=86.0)
    assert {"feat_start_kimg", "id_ensemble"} <= tiny(feat_start_kimg=90.0).unstarted_changes(saved, 80.0)
    assert "feat_start_kimg" not in tiny(feat_start_kimg=50.0).unstarted_changes(saved, 80.0)
    assert "feat_weight" not in tiny(feat_weight=1.0, feat_start_kimg=86.0).unstarted_changes(saved, 90.0)
    added = tiny(id_ensemble=("x",), id_ensemble_start_kimg=142.0)
    assert "id_ensemble" in added.unstarted_changes(saved, 142.0)  # never on in the saved run, starts now
    assert "id_ensemble" not in added.unstarted_changes(saved, 150.0)
    assert "lr" not in added.unstarted_changes(saved, 0.0)


def test_checkpoint_defects_are_checkpoint_errors(cae_ws):
    train_cae(cae_ws, tiny(kimg=0.016, snapshot_kimg=0.016), progress=False)
    gan_dir = cae_ws.gan_dir
    weights = gan_dir / "E_ema.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_encoder(gan_dir)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_encoder(gan_dir)
    weights.write_bytes(data)
    load_encoder(gan_dir)
    g = gan_dir / "G_ema.safetensors"
    g.write_bytes(g.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_generator(gan_dir)
    # an encoder copied next to another generator than the one it was saved with
    train_cae(cae_ws, tiny(kimg=0.016, snapshot_kimg=0.016, seed=1), progress=False, resume=False)
    saved = {n: (gan_dir / n).read_bytes() for n in ("E_ema.safetensors", "encoder.json")}
    train_cae(cae_ws, tiny(kimg=0.016, snapshot_kimg=0.016, seed=2), progress=False, resume=False)
    load_encoder(gan_dir)
    for name, blob in saved.items():
        (gan_dir / name).write_bytes(blob)
    with pytest.raises(CheckpointError, match="another generator"):
        load_encoder(gan_dir)


def test_missing_embedder_or_pairs_are_workspace_errors(tmp_path):
    from reid_core.errors import WorkspaceError

    ws = make_workspace(tmp_path / "single", n_patients=4, per_patient=1, size=32)
    ids = load_manifest(ws.manifest_path)["image_id"]
    EmbeddingTable(np.eye(len(ids), 8, dtype=np.float32), ids).save(ws.embeddings_path)
    with pytest.raises(WorkspaceError, match="two"):
        load_pair_data(ws, 16)
    ws2 = make_workspace(tmp_path / "noemb", n_patients=4, per_patient=2, size=32)
    ids = load_manifest(ws2.manifest_path)["image_id"]
    EmbeddingTable(np.eye(len(ids), 8, dtype=np.float32), ids).save(ws2.embeddings_path)
    with pytest.raises(WorkspaceError, match="embedder"):
        train_cae(ws2, tiny(), progress=False)


def test_the_generator_trainers_do_not_load_metric_learning():
    import subprocess
    import sys

    code = ("import sys, reid_core, gan.train, gan.cae.train; "
            "print(any(m.startswith('pytorch_metric_learning') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_gan_run_does_not_resume_or_silently_replace_an_autoencoder_run(cae_ws):
    from gan.train import train_gan
    from gan.train_config import GanTrainConfig

    train_cae(cae_ws, tiny(kimg=0.016, snapshot_kimg=0.016), progress=False)
    gan_cfg = GanTrainConfig(preset="tiny", res=16, batch=4, kimg=0.008, tick_kimg=0.004, snapshot_kimg=0.008,
                             grid_rows=2, grid_cols=2, device="cpu")
    with pytest.raises(TrainingError, match="autoencoder run"):
        train_gan(cae_ws, gan_cfg, progress=False)
    assert (cae_ws.encoder_weights_path).is_file()  # nothing replaced
    train_gan(cae_ws, gan_cfg, resume=False, progress=False)
    assert not (cae_ws.encoder_weights_path).exists()  # no orphaned encoder beside the GAN's generator
    with pytest.raises(TrainingError, match="autoencoder run"):
        train_cae(cae_ws, tiny(), progress=False)


# --------------------------------------------------------------------------- identity through other recognisers

class _LinearRecogniser(nn.Module):
    """A frozen-able recogniser with parameters of its own (another embedding space than the condition's)."""

    class config:  # noqa: N801 - mimics Embedder.config
        image_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.proj(x.flatten(1)), dim=1)


def test_the_ensemble_identity_term_trains_the_generator_not_the_recognisers():
    torch.manual_seed(0)
    x, c, _, patient = toy_films(4, 4)
    cfg = tiny(batch=8, adv_weight=0.0, feat_weight=0.0, id_fraction=0.5, id_ensemble_weight=1.0,
               id_ensemble_ramp_kimg=0.0)
    recogniser = _LinearRecogniser()
    before = [p.detach().clone() for p in recogniser.parameters()]
    engine = CaeEngine(cfg.arch.gan_config(16, 2), EncoderConfig(16, 4, 128, 32), cfg, CentroidEmbedder(),
                       torch.device("cpu"), recognisers=[recogniser])
    pos = torch.from_numpy(PairSampler([np.flatnonzero(patient == p) for p in range(4)], 8, seed=0).positions(0))
    g_before = [p.detach().clone() for p in engine.G.parameters()]
    stats = engine.step(x[pos], c[pos], 0, 0)
    assert 0.0 <= float(stats["loss/id_ensemble"]) <= 2.0
    assert all(torch.equal(a, b) for a, b in zip(before, recogniser.parameters()))  # frozen
    assert any(not torch.equal(a, b) for a, b in zip(g_before, engine.G.parameters()))
    plain = CaeEngine(cfg.arch.gan_config(16, 2), EncoderConfig(16, 4, 128, 32), cfg, CentroidEmbedder(),
                      torch.device("cpu"))
    assert "loss/id_ensemble" not in plain.step(x[pos], c[pos], 0, 0)


def test_ensemble_identity_loss_reads_the_target_films_in_each_recognisers_space():
    from gan.cae.losses import embed_films, ensemble_identity_loss

    torch.manual_seed(0)
    x, _, _, _ = toy_films(4, 2)
    recognisers = [_LinearRecogniser().requires_grad_(False), _LinearRecogniser().requires_grad_(False)]
    renders = x.clone().requires_grad_(True)
    same = ensemble_identity_loss(recognisers, renders, x)
    other = ensemble_identity_loss(recognisers, renders, x.flip(0))
    assert float(same.detach()) < float(other.detach())  # a render of the target film itself reads as that film
    other.backward()
    assert renders.grad is not None and renders.grad.abs().sum() > 0
    assert embed_films(recognisers[0], x).shape == (8, 3)


def test_the_judge_may_not_be_a_recogniser_of_the_generators_losses(tmp_path):
    from gan.cae.report import refuse_judge_in_losses
    from reid_core.checkpoint import save_embedder
    from reid_core.model import Embedder, EmbedderConfig

    torch.manual_seed(0)
    for name in ("judge", "other"):
        save_embedder(tmp_path / name, Embedder(EmbedderConfig(backbone="resnet10t", embedding_dim=4, image_size=32)))
    refuse_judge_in_losses(tmp_path / "judge", [str(tmp_path / "other")])  # another recogniser: fine
    refuse_judge_in_losses(tmp_path / "judge", [])
    with pytest.raises(ValueError, match="cannot judge it independently"):
        refuse_judge_in_losses(tmp_path / "judge", [str(tmp_path / "other"), str(tmp_path / "judge")])


def test_the_model_card_names_the_recognisers_of_the_identity_cycle():
    from gan.cae.ship import model_card

    metrics = {"judges": {"embedder": {}, "judge": {}}}
    with_ens = tiny(id_ensemble=("training/id_ensemble/previous_embedder",), id_ensemble_start_kimg=5.0).to_dict()
    card = model_card({"train": with_ens, "gan": {}, "stats": {}}, metrics)
    assert "1 other frozen recogniser(s), `training/id_ensemble/previous_embedder`, weight 0.5 from 5.0 kimg" in card
    assert "other frozen recogniser" not in model_card({"train": tiny().to_dict(), "gan": {}, "stats": {}}, metrics)
