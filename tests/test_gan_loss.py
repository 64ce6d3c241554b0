"""GAN loss phases, R1 / path-length regularisation, style mixing, EMA and a short training run."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import reid_core  # noqa: F401
from gan.config import GanConfig, build_discriminator, build_generator
from gan.loss import GanLoss, r1_gamma_for, update_ema

C_DIM = 4



def _nets(seed=0, res=16):
    torch.manual_seed(seed)
    cfg = GanConfig.preset("tiny", c_dim=C_DIM, resolution=res)
    return build_generator(cfg), build_discriminator(cfg)


def _batch(n=4, res=16, z_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, res, res, generator=g), torch.randn(n, C_DIM, generator=g),
            torch.randn(n, z_dim, generator=g), torch.randn(n, C_DIM, generator=g))


def _has_grad(module: nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def _zero(*modules: nn.Module) -> None:
    for m in modules:
        m.zero_grad(set_to_none=True)


class LinearD(nn.Module):
    """D(x, c) = <a, x>: ∇ₓD = a, so R1 = |a|² exactly."""

    def __init__(self, shape):
        super().__init__()
        self.a = nn.Parameter(torch.randn(shape))

    def forward(self, img, c, cond_scale=1.0):
        return (img * self.a).flatten(1).sum(1, keepdim=True)


def test_r1_gamma_heuristic():
    assert r1_gamma_for(256, 64) == pytest.approx(0.2048)
    assert r1_gamma_for(128, 32) == pytest.approx(0.1024)
    with pytest.raises(ValueError):
        r1_gamma_for(0, 4)


@pytest.mark.parametrize("phase,trained,untouched", [
    ("Gmain", "G", "D"), ("Greg", "G", "D"), ("Dmain", "D", "G"), ("Dreg", "D", "G"),
])
def test_phases_send_gradients_to_the_right_network(phase, trained, untouched):
    G, D = _nets()
    loss = GanLoss(G, D, r1_gamma=1.0, pl_weight=2.0)
    stats = loss.accumulate_gradients(phase, *_batch(), gain=1.0, cur_nimg=0)
    nets = {"G": G, "D": D}
    assert _has_grad(nets[trained])
    assert all(p.grad is None for p in nets[untouched].parameters())
    assert all(p.requires_grad for p in D.parameters()) and all(p.requires_grad for p in G.parameters())
    assert len(stats) > 1 and all(torch.isfinite(v).all() for v in stats.values())
    if phase == "Greg":
        assert G.mapping.layers[0].weight.grad is not None  # path length reaches the mapping net


def test_disabled_regularisers_are_no_ops():
    G, D = _nets()
    loss = GanLoss(G, D, r1_gamma=0.0, pl_weight=0.0)
    for phase in ("Greg", "Dreg"):
        assert set(loss.accumulate_gradients(phase, *_batch(), gain=1.0, cur_nimg=0)) == {"cond_scale"}
    assert not _has_grad(G) and not _has_grad(D)
    with pytest.raises(ValueError):
        loss.accumulate_gradients("Gboth", *_batch(), gain=1.0, cur_nimg=0)


def test_dmain_loss_value_matches_softplus():
    G, D = _nets()
    loss = GanLoss(G, D, style_mixing_prob=0.0)
    real, real_c, z, gen_c = _batch()
    stats = loss.accumulate_gradients("Dmain", real, real_c, z, gen_c, gain=1.0, cur_nimg=0)
    expect_real = nn.functional.softplus(-D(real, real_c)).mean()
    torch.testing.assert_close(stats["loss/D_real"], expect_real.detach())
    torch.testing.assert_close(stats["loss/D"], stats["loss/D_real"] + stats["loss/D_fake"])


def test_r1_penalty_matches_hand_computation_through_augment():
    G, _ = _nets()
    D = LinearD((1, 16, 16))
    calls = []

    def augment(x):
        calls.append(x.shape[0])
        return 2.0 * x  # differentiable: ∇ₓ D(2x) = 2a

    gamma, gain = 0.5, 4.0
    loss = GanLoss(G, D, augment_pipe=augment, r1_gamma=gamma)
    stats = loss.accumulate_gradients("Dreg", *_batch(), gain=gain, cur_nimg=0)
    a = D.a.detach()
    torch.testing.assert_close(stats["r1_penalty"], 4 * a.square().sum())
    torch.testing.assert_close(stats["loss/r1"], gamma / 2 * 4 * a.square().sum())
    # d/da [gain · γ/2 · |2a|²] = gain · γ · 4a
    torch.testing.assert_close(D.a.grad, gain * gamma * 4 * a)
    assert calls == [4]
    D.zero_grad()
    loss.accumulate_gradients("Dmain", *_batch(), gain=1.0, cur_nimg=0)
    assert calls == [4, 4, 4]  # fakes and reals both pass through the pipe


def test_path_length_mean_is_an_ema():
    G, D = _nets()
    loss = GanLoss(G, D, pl_weight=1.0, pl_decay=0.01, pl_batch_shrink=2)
    stats = loss.accumulate_gradients("Greg", *_batch(), gain=1.0, cur_nimg=0)
    first = stats["pl/mean"].item()
    assert first > 0
    # pl_mean = 0.01 · mean length; penalty = (length - pl_mean)²  ⇒  length ≈ 100 · pl_mean
    assert stats["pl/penalty"].item() == pytest.approx((100 * first - first) ** 2, rel=0.3)
    state = loss.state_dict()
    restored = GanLoss(G, D, pl_weight=1.0)
    restored.load_state_dict(state)
    assert restored.pl_mean.item() == pytest.approx(first)


def test_style_mixing_and_cond_ramp():
    G, D = _nets()
    _, _, z, c = _batch()
    ws = GanLoss(G, D, style_mixing_prob=0.0).sample_ws(z, c)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    ws = GanLoss(G, D, style_mixing_prob=1.0).sample_ws(z, c)
    changes = (ws[:, 1:] != ws[:, :-1]).any(dim=2).any(dim=0)  # crossover positions
    assert changes.sum().item() == 1
    ramp = GanLoss(G, D, cond_ramp_kimg=2.0)
    assert [ramp.cond_scale(n) for n in (0, 1000, 2000, 9000)] == [0.0, 0.5, 1.0, 1.0]
    assert GanLoss(G, D).cond_scale(0) == 1.0
    stats = ramp.accumulate_gradients("Gmain", *_batch(), gain=1.0, cur_nimg=500)
    assert stats["cond_scale"].item() == pytest.approx(0.25)


def test_update_ema_moves_parameters_by_one_minus_beta():
    G, _ = _nets()
    G_ema = copy.deepcopy(G).requires_grad_(False)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
        G.mapping.w_avg.fill_(3.0)
    before = {n: p.clone() for n, p in G_ema.named_parameters()}
    update_ema(G_ema, G, beta=0.9)
    for n, p in G_ema.named_parameters():
        torch.testing.assert_close(p, before[n] + 0.1)
    torch.testing.assert_close(G_ema.mapping.w_avg, torch.full_like(G_ema.mapping.w_avg, 3.0))
    with pytest.raises(ValueError):
        update_ema(G_ema, G, beta=1.5)


# -- short training run -------------------------------------------------------
def _blobs(c: torch.Tensor, res: int) -> torch.Tensor:
    """Bright Gaussian blob whose x-position is c[:, 0] ∈ [-1, 1]; images in [-1, 1]."""
    coords = torch.linspace(-1, 1, res)
    cx = c[:, 0].clamp(-0.7, 0.7).view(-1, 1, 1)
    d2 = (coords.view(1, 1, -1) - cx) ** 2 + coords.view(1, -1, 1) ** 2
    return (2 * torch.exp(-d2 / 0.08) - 1).unsqueeze(1)


def _blob_x(img: torch.Tensor) -> torch.Tensor:
    """Brightness-weighted mean x-coordinate of each image, in [-1, 1]."""
    w = (img[:, 0] + 1).clamp(min=0)
    coords = torch.linspace(-1, 1, img.shape[-1])
    return (w.sum(1) * coords).sum(1) / w.sum((1, 2))


@pytest.fixture(scope="module")
def trained():
    """200 steps of a tiny conditional G/D on 16 px blobs whose x-position is c[0] (~8 s on one core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    G, D = _nets(seed=1)
    opt_g = torch.optim.Adam(G.parameters(), lr=0.003, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=0.003, betas=(0.0, 0.99))
    loss = GanLoss(G, D, r1_gamma=r1_gamma_for(16, 8) * 10, pl_weight=0.0)
    G_ema = copy.deepcopy(G).requires_grad_(False)
    torch.manual_seed(0)
    history = []
    for step in range(200):
        c = torch.rand(8, C_DIM) * 2 - 1
        real, z = _blobs(c, 16), torch.randn(8, 16)
        phases = [("Dmain", opt_d, 1.0), ("Gmain", opt_g, 1.0)] + ([("Dreg", opt_d, 4.0)] if step % 4 == 0 else [])
        for phase, opt, gain in phases:
            opt.zero_grad(set_to_none=True)
            stats = loss.accumulate_gradients(phase, real, c, z, c, gain=gain, cur_nimg=step * 8)
            opt.step()
            history.append((phase, {k: v.item() for k, v in stats.items()}))
        update_ema(G_ema, G, beta=0.95)
    torch.set_num_threads(before)
    return G_ema, history


def test_short_training_run_learns_without_nans(trained):
    _, history = trained
    assert all(math.isfinite(v) for _, stats in history for v in stats.values())
    gaps = [s["scores/real"] - s["scores/fake"] for phase, s in history if phase == "Dmain"]
    d_loss = [s["loss/D"] for phase, s in history if phase == "Dmain"]
    assert abs(gaps[0]) < 0.5  # the untrained D cannot tell blobs from G's output
    assert sum(gaps[-50:]) / 50 > 0.3  # later it scores reals above fakes (≈ 0.8 here)
    assert sum(d_loss[-50:]) / 50 < 2 * math.log(2) - 0.1  # better than chance (≈ 1.13 vs 1.39)
    g_loss = [s["loss/G"] for phase, s in history if phase == "Gmain"]
    assert sum(g_loss[-50:]) / 50 > g_loss[0]  # and G's task got harder


def test_condition_controls_blob_position(trained):
    G_ema, _ = trained
    g = torch.Generator().manual_seed(5)
    c = torch.rand(64, C_DIM, generator=g) * 2 - 1
    with torch.no_grad():
        img = G_ema(torch.randn(64, 16, generator=g), c, noise_mode="const")
    assert torch.isfinite(img).all()
    corr = torch.corrcoef(torch.stack([_blob_x(img), c[:, 0]]))[0, 1].item()
    assert corr > 0.5, corr
