"""GAN building blocks: FIR resampling, equalised layers, modulated conv, noise, minibatch std."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reid_core  # noqa: F401  (import order convention: before anything touching timm)
from gan.layers import (
    EqualConv2d,
    EqualLinear,
    MinibatchStd,
    ModulatedConv2d,
    NoiseInput,
    assert_shape,
    bias_act,
    downsample2d,
    fir_filter2d,
    make_fir_kernel,
    upsample2d,
)



# -- numpy references ---------------------------------------------------------
def _conv_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """True 2-D convolution, 'valid' mode, by explicit loops."""
    kh, kw = k.shape
    kf = k[::-1, ::-1]
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (x[i:i + kh, j:j + kw] * kf).sum()
    return out


def _ref_up(x: np.ndarray, taps) -> np.ndarray:
    f = np.asarray(taps, float)
    k = np.outer(f, f) / np.outer(f, f).sum()
    K = len(f)
    z = np.zeros((2 * x.shape[0], 2 * x.shape[1]))
    z[::2, ::2] = x
    zp = np.pad(z, ((K // 2, K // 2 - 1), (K // 2, K // 2 - 1)))
    return 4.0 * _conv_valid(zp, k)


def _ref_down(x: np.ndarray, taps) -> np.ndarray:
    f = np.asarray(taps, float)
    k = np.outer(f, f) / np.outer(f, f).sum()
    p = len(f) // 2 - 1
    return _conv_valid(np.pad(x, p), k)[::2, ::2]


TAPS = [(1, 3, 3, 1), (1, 1), (1, 2)]  # default, box, asymmetric (catches flip errors)


# -- FIR ----------------------------------------------------------------------
def test_fir_kernel_is_normalised_outer_product():
    k = make_fir_kernel()
    assert k.shape == (4, 4)
    assert torch.allclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    with pytest.raises(ValueError):
        make_fir_kernel((1, 2, 1))  # odd length


@pytest.mark.parametrize("taps", TAPS)
@pytest.mark.parametrize("resample, reference, size, out_size", [
    (upsample2d, _ref_up, (5, 6), (10, 12)),  # zero insertion, then the FIR
    (downsample2d, _ref_down, (8, 6), (4, 3)),  # the FIR, then stride 2
], ids=["up", "down"])
def test_resampling_matches_its_numpy_reference(taps, resample, reference, size, out_size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    y = resample(x, make_fir_kernel(taps).double())
    assert y.shape == (2, 3, *out_size)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c].numpy(), reference(x[n, c].numpy(), taps), atol=1e-12)


def test_fir_filter_is_true_convolution():
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64)
    k = make_fir_kernel((1, 2)).double()
    y = fir_filter2d(x, k, padding=1)
    ref = _conv_valid(np.pad(x[0, 1].numpy(), 1), k.numpy())
    np.testing.assert_allclose(y[0, 1].numpy(), ref, atol=1e-12)


def test_unit_dc_gain_interior():
    k = make_fir_kernel()
    x = torch.full((1, 2, 16, 16), 0.7)
    up, down = upsample2d(x, k), downsample2d(x, k)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))
    both = upsample2d(downsample2d(x, k), k)
    torch.testing.assert_close(both[..., 4:-4, 4:-4], torch.full_like(both[..., 4:-4, 4:-4], 0.7))


def test_resampling_grids_are_aligned():
    """A linear ramp is reproduced at the new pixel centres (no half-pixel shift)."""
    k = make_fir_kernel()
    ramp = torch.arange(16, dtype=torch.float64).expand(1, 1, 16, 16)
    up = upsample2d(ramp, k.double())[0, 0, 8, 3:-3]
    n = torch.arange(3, 29, dtype=torch.float64)
    torch.testing.assert_close(up, n / 2 - 0.25)  # output n sits at input (n + ½)/2 - ½
    down = downsample2d(ramp, k.double())[0, 0, 4, 1:-1]
    torch.testing.assert_close(down, 2 * torch.arange(1, 7, dtype=torch.float64) + 0.5)
    conv = EqualConv2d(1, 1, 3, bias=False, down=2).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 3.0  # centre tap only, effective 1.0
    torch.testing.assert_close(conv(ramp)[0, 0, 4, 1:-1], down)  # blur + stride-2 conv lands on the same grid


# -- equalised layers ---------------------------------------------------------
@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equal_linear_effective_weight_scale(lr_mul):
    torch.manual_seed(0)
    layer = EqualLinear(256, 64, lr_multiplier=lr_mul, bias_init=0.5)
    assert layer.effective_weight().std().item() == pytest.approx(1 / math.sqrt(256), rel=0.05)
    assert layer.weight.std().item() == pytest.approx(1 / lr_mul, rel=0.05)
    out = layer(torch.zeros(3, 256))
    torch.testing.assert_close(out, torch.full((3, 64), 0.5))  # effective bias = bias_init


def test_equal_conv_effective_weight_scale():
    torch.manual_seed(0)
    conv = EqualConv2d(16, 32, 3)
    w = conv.weight * conv.weight_gain
    assert w.std().item() == pytest.approx(1 / math.sqrt(16 * 9), rel=0.05)
    y = conv(torch.randn(8, 16, 12, 12))[..., 1:-1, 1:-1]
    assert y.std().item() == pytest.approx(1.0, abs=0.2)


def test_lrelu_gain_stack_preserves_scale():
    torch.manual_seed(0)
    x = torch.randn(512, 128)
    layers = [EqualLinear(128, 128, activation="lrelu") for _ in range(4)]
    y = x
    for layer in layers:
        y = layer(y)
    rms = y.square().mean().sqrt().item()
    assert 0.75 < rms < 1.4, rms
    y_nogain = x  # without the √2 gain the scale would halve layer after layer
    for layer in layers:
        y_nogain = F.leaky_relu(F.linear(y_nogain, layer.effective_weight()), 0.2)
    assert y_nogain.square().mean().sqrt().item() < 0.4


def test_bias_act_clamp_and_unknown_activation():
    x = torch.tensor([[-10.0, 0.5, 10.0]])
    y = bias_act(x, torch.zeros(3), "lrelu", clamp=1.0)
    torch.testing.assert_close(y, torch.tensor([[-1.0, 0.5 * math.sqrt(2), 1.0]]))
    with pytest.raises(ValueError):
        bias_act(x, act="relu6")


def test_assert_shape_message():
    with pytest.raises(ValueError, match=r"expected shape \(\*, 3\)"):
        assert_shape(torch.zeros(2, 4), [None, 3], "thing")


# -- modulated conv -----------------------------------------------------------
def _loop_reference(conv: ModulatedConv2d, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-sample conv with an explicitly modulated (and demodulated) kernel."""
    outs = []
    base = conv.weight / math.sqrt(conv.in_channels * conv.kernel_size**2)
    for n in range(x.shape[0]):
        w = base * s[n].view(1, -1, 1, 1)
        if conv.demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xn = x[n:n + 1]
        if conv.up == 2:
            xn = upsample2d(xn, conv.fir)
        outs.append(F.conv2d(xn, w, padding=conv.kernel_size // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("up,demod,k", [(1, True, 3), (2, True, 3), (1, False, 1)])
def test_modulated_conv_fused_and_unfused_match_loop(up, demod, k):
    torch.manual_seed(1)
    conv = ModulatedConv2d(6, 5, k, demodulate=demod, up=up).double()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    s = torch.randn(3, 6, dtype=torch.float64) + 1.0
    ref = _loop_reference(conv, x, s)
    torch.testing.assert_close(conv(x, s, fused=True), ref)
    torch.testing.assert_close(conv(x, s, fused=False), ref)


def test_demodulation_gives_unit_std_per_output_channel():
    torch.manual_seed(2)
    conv = ModulatedConv2d(32, 16, 3, demodulate=True)
    x = torch.randn(8, 32, 16, 16)
    s = torch.exp(torch.randn(8, 32))  # positive styles spanning ~an order of magnitude
    y = conv(x, s)[..., 1:-1, 1:-1]
    std = y.transpose(0, 1).reshape(16, 8, -1).std(dim=2)  # (out channel, sample)
    assert 0.9 < std.mean().item() < 1.1
    assert 0.7 < std.min().item() and std.max().item() < 1.3
    plain = ModulatedConv2d(32, 16, 3, demodulate=False)
    plain.weight.data.copy_(conv.weight.data)
    assert plain(x, s).std().item() > 1.5  # the same styles without demodulation blow the scale up


# -- noise, minibatch std -----------------------------------------------------
def test_noise_input_modes():
    noise = NoiseInput(8, seed=3)
    with torch.no_grad():
        noise.strength.fill_(0.5)
    x = torch.zeros(2, 4, 8, 8)
    a, b = noise(x, "const"), noise(x, "const")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0, 0], 0.5 * NoiseInput(8, seed=3).noise_const)  # same seed, same buffer
    assert not torch.equal(noise(x, "random"), noise(x, "random"))
    torch.testing.assert_close(noise(x, "none"), x)
    explicit = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(noise(x, "random", noise=explicit), 0.5 * explicit.expand(2, 4, 8, 8))
    with pytest.raises(ValueError):
        noise(x, "banana")
    with pytest.raises(ValueError):
        noise(x, noise=torch.randn(2, 1, 4, 4))


def test_minibatch_std_on_hand_made_batch():
    # groups of 2 consecutive samples; channels [ch0, ch1], one pixel
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [1.0, 1.0]]).view(4, 2, 1, 1)
    y = MinibatchStd(group_size=2, num_channels=1)(x)
    assert y.shape == (4, 3, 1, 1)
    torch.testing.assert_close(y[:, :2], x)
    # group 0: per-channel population std [1, 2] → mean 1.5; group 1: 0 (+ √1e-8)
    torch.testing.assert_close(y[:, 2, 0, 0], torch.tensor([1.5, 1.5, 1e-4, 1e-4]))
    y2 = MinibatchStd(group_size=2, num_channels=2)(x)
    torch.testing.assert_close(y2[:2, 2:, 0, 0], torch.tensor([[1.0, 2.0], [1.0, 2.0]]))


def test_minibatch_std_group_of_four_and_odd_batch():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3, 3)
    y = MinibatchStd(4, 1)(x)
    expect = x.view(2, 4, 4, 3, 3).std(dim=1, unbiased=False).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y[:, 4, 0, 0], expect.repeat_interleave(4), atol=1e-5, rtol=1e-5)
    assert MinibatchStd(4, 1)(torch.randn(6, 4, 3, 3)).shape == (6, 5, 3, 3)  # groups of 3
