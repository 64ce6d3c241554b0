"""Generator, discriminator, mapping network and configuration presets (tiny sizes only)."""
from __future__ import annotations

import json

import pytest
import torch

import reid_core  # noqa: F401
from gan.config import PRESETS, GanConfig, build_discriminator, build_generator
from gan.networks import (
    Discriminator,
    Generator,
    MappingNetwork,
    SynthesisNetwork,
    channels_for,
)

C_DIM = 8



@pytest.fixture(scope="module")
def tiny_cfg() -> GanConfig:
    return GanConfig.preset("tiny", c_dim=C_DIM)


@pytest.fixture()
def nets(tiny_cfg):
    torch.manual_seed(0)
    G, D = build_generator(tiny_cfg), build_discriminator(tiny_cfg)
    for layer in G.modules():  # non-zero noise strengths so that noise modes are visible
        if hasattr(layer, "strength"):
            layer.strength.data.fill_(0.3)
    return G, D


def _zc(n=4, z_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, z_dim, generator=g), torch.randn(n, C_DIM, generator=g)


# -- shapes -------------------------------------------------------------------
def test_generator_and_discriminator_shapes(nets, tiny_cfg):
    G, D = nets
    z, c = _zc()
    img = G(z, c)
    assert img.shape == (4, 1, 16, 16)
    assert torch.isfinite(img).all()
    assert D(img, c).shape == (4, 1)
    assert G.num_ws == 6 and G.mapping(z, c).shape == (4, 6, tiny_cfg.w_dim)
    assert len(G.synthesis.noise_shapes()) == 5


@pytest.mark.parametrize("res,num_ws", [(8, 4), (16, 6), (32, 8)])
def test_num_ws(res, num_ws):
    synth = SynthesisNetwork(w_dim=8, img_resolution=res, channel_base=64, channel_max=8)
    assert synth.num_ws == num_ws
    assert synth(torch.randn(2, num_ws, 8)).shape == (2, 1, res, res)


def test_bad_shapes_and_resolutions_raise(nets):
    G, D = nets
    with pytest.raises(ValueError):
        G.synthesis(torch.randn(2, 5, 32))
    with pytest.raises(ValueError):
        D(torch.randn(2, 1, 8, 8), torch.randn(2, C_DIM))
    with pytest.raises(ValueError):
        SynthesisNetwork(8, 24)


# -- mapping, truncation ------------------------------------------------------
def test_truncation_psi_zero_ignores_z(nets):
    G, _ = nets
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    z1, c = _zc(seed=1)
    z2, _ = _zc(seed=2)
    ws = G.mapping(z1, c, truncation_psi=0.0)
    torch.testing.assert_close(ws, G.mapping.w_avg.expand_as(ws))
    a = G(z1, c, truncation_psi=0.0, noise_mode="const")
    b = G(z2, c, truncation_psi=0.0, noise_mode="const")
    torch.testing.assert_close(a, b)
    assert not torch.allclose(G(z1, c, noise_mode="const"), G(z2, c, noise_mode="const"))


def test_truncation_cutoff_and_psi(nets):
    G, _ = nets
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    z, c = _zc()
    full = G.mapping(z, c)
    cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], G.mapping.w_avg + 0.5 * (full[:, :2] - G.mapping.w_avg))
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])


def test_w_avg_is_an_ema_of_w():
    m = MappingNetwork(4, 3, 6, num_ws=2, w_avg_beta=0.9)
    z, c = torch.randn(5, 4), torch.randn(5, 3)
    w = m(z, c, update_emas=True)[:, 0]
    torch.testing.assert_close(m.w_avg, 0.1 * w.mean(0))
    m(z, c)  # update_emas=False leaves it alone
    torch.testing.assert_close(m.w_avg, 0.1 * w.mean(0))


def test_mapping_normalises_and_concatenates():
    m = MappingNetwork(4, 3, 6, num_ws=None)
    z, c = torch.randn(5, 4), torch.randn(5, 3)
    torch.testing.assert_close(m(z, c), m(10 * z, 10 * c))  # both parts are 2nd-moment normalised
    assert m(z, c).shape == (5, 6)
    assert not torch.allclose(m(z, c), m(z, c.flip(0)))


# -- noise --------------------------------------------------------------------
def test_noise_modes(nets):
    G, _ = nets
    z, c = _zc()
    torch.testing.assert_close(G(z, c, noise_mode="const"), G(z, c, noise_mode="const"))
    assert not torch.allclose(G(z, c, noise_mode="random"), G(z, c, noise_mode="random"))
    noise = [torch.randn(4, *s) for s in G.synthesis.noise_shapes()]
    torch.testing.assert_close(G(z, c, noise=noise), G(z, c, noise=noise))
    zeros = [torch.zeros(1, *s) for s in G.synthesis.noise_shapes()]
    torch.testing.assert_close(G(z, c, noise_mode="none"), G(z, c, noise=zeros))
    with pytest.raises(ValueError):
        G(z, c, noise=noise[:-1])


def test_fused_and_unfused_synthesis_agree(nets):
    G, _ = nets
    ws = G.mapping(*_zc())
    a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# -- conditioning -------------------------------------------------------------
def test_condition_changes_outputs(nets):
    G, D = nets
    z, c = _zc()
    c2 = torch.randn_like(c)
    assert (G(z, c, noise_mode="const") - G(z, c2, noise_mode="const")).abs().mean() > 1e-3
    img = torch.randn(4, 1, 16, 16)
    assert (D(img, c) - D(img, c2)).abs().mean() > 1e-3


def test_cond_scale_zero_makes_both_nets_unconditional(nets):
    G, D = nets
    z, c = _zc()
    c2 = torch.randn_like(c)
    torch.testing.assert_close(G.mapping(z, c, cond_scale=0.0), G.mapping(z, c2, cond_scale=0.0))
    img = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(D(img, c, cond_scale=0.0), D(img, c2, cond_scale=0.0))
    # the factor acts after the embedding's normalisation, so intermediate values matter
    assert not torch.allclose(G.mapping(z, c, cond_scale=0.5), G.mapping(z, c))
    assert not torch.allclose(D(img, c, cond_scale=0.5), D(img, c))
    per_sample = torch.tensor([0.0, 1.0, 0.0, 1.0])  # a (N,) factor scales rows
    mixed = G.mapping(z, c, cond_scale=per_sample)
    torch.testing.assert_close(mixed[1], G.mapping(z, c)[1])
    torch.testing.assert_close(mixed[0], G.mapping(z, c, cond_scale=0.0)[0])


def test_every_parameter_receives_gradient(nets):
    G, D = nets
    z, c = _zc()
    D(G(z, c), c).sum().backward()
    missing = [n for n, p in list(G.named_parameters()) + list(D.named_parameters()) if p.grad is None]
    assert not missing, missing


def test_unconditional_networks():
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8,
                  synthesis_kwargs=dict(channel_base=64, channel_max=8))
    D = Discriminator(c_dim=0, img_resolution=8, channel_base=64, channel_max=8)
    img = G(torch.randn(2, 8), None)
    assert img.shape == (2, 1, 8, 8) and D(img).shape == (2, 1)


# -- configuration ------------------------------------------------------------
def test_config_round_trip_and_unknown_keys(tiny_cfg):
    d = json.loads(json.dumps(tiny_cfg.to_dict()))
    assert GanConfig.from_dict(d) == tiny_cfg
    with pytest.raises(ValueError, match="unknown GanConfig key"):
        GanConfig.from_dict({**d, "channel_bsae": 3})
    with pytest.raises(ValueError, match="unknown GAN preset"):
        GanConfig.preset("512", c_dim=4)
    with pytest.raises(ValueError):
        GanConfig.preset("tiny", c_dim=4, resolution=48)


def test_presets_channel_plan():
    assert set(PRESETS) == {"tiny", "64", "128", "256"}
    cfg = GanConfig.preset("128", c_dim=64)
    assert (cfg.resolution, cfg.g_channel_base, cfg.g_channel_max, cfg.mapping_layers) == (128, 8192, 256, 2)
    assert (cfg.d_channel_base, cfg.d_channel_max) == (16384, 256)
    assert [channels_for(r, cfg.g_channel_base, cfg.g_channel_max) for r in (4, 32, 64, 128)] == [256, 256, 128, 64]
    assert channels_for(128, cfg.d_channel_base, cfg.d_channel_max) == 128
    tiny = GanConfig.preset("tiny", c_dim=4)
    assert tiny.resolution <= 32
    assert max(channels_for(r, tiny.g_channel_base, tiny.g_channel_max) for r in (4, 8, 16)) <= 32
    for name in PRESETS:
        assert GanConfig.preset(name, c_dim=16).c_dim == 16
