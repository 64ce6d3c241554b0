"""ADA augmentation pipe, its double-differentiable warp and the p controller."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from gan.augment import (
    AdaController,
    AugmentParams,
    AugmentPipe,
    adjust_brightness,
    adjust_contrast,
    adjust_gamma,
    affine_warp,
    cutout_mask,
    inverse_affine,
)

GEOMETRY_ONLY = dict(gamma=0.0, brightness=0.0, contrast=0.0, cutout=0.0)


def _matrix(theta: float, scale: float, bx: float, by: float, batch: int = 1) -> torch.Tensor:
    """Sampling matrix [A | b] with A = R(-theta) / scale, float64."""
    c, s = math.cos(theta) / scale, math.sin(theta) / scale
    m = torch.tensor([[c, s, bx], [-s, c, by]], dtype=torch.float64)
    return m.expand(batch, 2, 3).clone()


def _params(batch: int = 1, dtype: torch.dtype = torch.float64, **values: float) -> AugmentParams:
    p = AugmentParams.identity(batch, dtype=dtype)
    for name, v in values.items():
        t = getattr(p, name)
        setattr(p, name, torch.as_tensor(v, dtype=dtype).expand_as(t).clone())
    return p


# -- identity -------------------------------------------------------------------
def test_p_zero_returns_input_and_passes_gradient_unchanged():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    pipe = AugmentPipe(p=0.0)
    y = pipe(x)
    assert y is x
    g = torch.randn_like(x)
    (y * g).sum().backward()
    assert torch.equal(x.grad, g)


def test_identity_params_are_bit_exact_even_with_p_one():
    x = torch.randn(3, 2, 9, 7)
    for padding in ("reflect", "zeros"):
        pipe = AugmentPipe(p=1.0, xflip=1.0, padding=padding)
        assert torch.equal(pipe(x, params=AugmentParams.identity(3)), x)


def test_pipe_p_survives_state_dict():
    pipe = AugmentPipe(p=0.37)
    other = AugmentPipe()
    other.load_state_dict(pipe.state_dict())
    assert other.p == pytest.approx(0.37)
    with pytest.raises(ValueError):
        AugmentPipe(p=1.5)


# -- warp correctness -----------------------------------------------------------
def test_warp_identity_and_integer_shift_are_exact():
    x = torch.randn(2, 1, 6, 8, dtype=torch.float64)
    assert torch.equal(affine_warp(x, _matrix(0, 1, 0, 0, 2)), x)
    right = affine_warp(x, _matrix(0, 1, -1.0, 0, 2))  # out(x) = in(x - 1)
    assert torch.equal(right[..., 1:], x[..., :-1])
    down = affine_warp(x, _matrix(0, 1, 0, -1.0, 2), padding="zeros")
    assert torch.equal(down[..., 1:, :], x[..., :-1, :])
    assert torch.equal(down[..., 0, :], torch.zeros_like(down[..., 0, :]))
    # the pipe's translate parameter moves content by +t pixels (x right, y down)
    pipe = AugmentPipe(p=1.0, padding="zeros")
    moved = pipe(x, params=_params(2, translate=[2.0, 1.0]))
    assert torch.equal(moved[..., 1:, 2:], x[..., :-1, :-2])


@pytest.mark.parametrize("padding,scipy_mode", [("reflect", "mirror"), ("zeros", "grid-constant")])
def test_rotation_and_scale_match_scipy_bilinear(padding, scipy_mode):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(7, 9))
    theta, scale, b = 0.3, 1.2, np.array([0.4, -0.7])
    out = affine_warp(torch.from_numpy(img)[None, None], _matrix(theta, scale, *b), padding)
    # scipy works in (row, col) = (y, x) with the origin at pixel (0, 0)
    a_xy = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]]) / scale
    a_rc = a_xy[::-1, ::-1]
    centre = np.array([3.0, 4.0])
    ref = ndi.affine_transform(img, a_rc, offset=b[::-1] + centre - a_rc @ centre, order=1,
                               mode=scipy_mode, cval=0.0)
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-12)
    assert not np.allclose(ref, img)


def test_pipe_geometry_moves_content_as_documented():
    """Content transform o = s·R(θ)·(F·i + t) about the centre, x right, y down."""
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 6] = 1.0  # two pixels right of the centre (4, 4)
    pipe = AugmentPipe(p=1.0, xflip=1.0, padding="zeros")

    def peak(**values: float) -> tuple[int, int]:
        out = pipe(x, params=_params(1, **values))[0, 0]
        assert float(out.max()) == pytest.approx(1.0, abs=1e-9)
        return divmod(int(out.argmax()), 9)

    assert peak(rotate=math.pi / 2) == (6, 4)  # right of centre -> below it
    assert peak(rotate=-math.pi / 2) == (2, 4)
    assert peak(translate=[-2.0, 0.0], rotate=math.pi / 2) == (4, 4)  # translate first
    assert peak(translate=[0.0, 1.0], rotate=math.pi / 2) == (6, 3)
    assert peak(scale=2.0) == (4, 8)
    assert peak(xflip=1.0) == (4, 2)
    m = inverse_affine(_params(1, scale=1.3, rotate=0.4, translate=[1.0, 2.0], xflip=1.0))
    forward = torch.linalg.inv(torch.cat([m[0], torch.tensor([[0.0, 0, 1]], dtype=m.dtype)]))
    c, s = 1.3 * math.cos(0.4), 1.3 * math.sin(0.4)
    rs = torch.tensor([[c, -s], [s, c]], dtype=m.dtype)
    expected = rs @ torch.tensor([[-1.0, 0, 1], [0, 1, 2]], dtype=m.dtype)
    assert torch.allclose(forward[:2], expected, atol=1e-12)


def test_no_flips_by_default_and_xflip_does_flip():
    x = torch.full((256, 1, 16, 16), -1.0)
    x[..., :8] = 1.0  # bright left half
    torch.manual_seed(0)
    out = AugmentPipe(p=1.0, **GEOMETRY_ONLY)(x)
    assert not torch.equal(out, x)
    left, right = out[..., :8].mean(dim=(1, 2, 3)), out[..., 8:].mean(dim=(1, 2, 3))
    assert bool((left > right).all())
    flipped = AugmentPipe(p=1.0, xflip=1.0, **GEOMETRY_ONLY)(x)
    frac = (flipped[..., :8].mean(dim=(1, 2, 3)) < flipped[..., 8:].mean(dim=(1, 2, 3))).float().mean()
    assert 0.3 < float(frac) < 0.7


# -- double backward ------------------------------------------------------------
@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_warp_gradgradcheck(padding):
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    m = _matrix(0.35, 0.8, 0.3, -1.4)
    fn = lambda img: affine_warp(img, m, padding)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_full_pipe_gradgradcheck_with_fixed_params():
    torch.manual_seed(1)
    x = (torch.rand(2, 1, 6, 6, dtype=torch.float64) * 1.2 - 0.6).requires_grad_()
    params = _params(2, translate=[1.0, -1.0], xflip=1.0, scale=1.1, rotate=0.2, gamma=1.7,
                     brightness=0.1, contrast=1.4, cutout_size=0.4)
    params.cutout_center = torch.tensor([[0.3, 0.6], [0.8, 0.2]], dtype=torch.float64)
    pipe = AugmentPipe(p=1.0, xflip=1.0)
    fn = lambda img: pipe(img, params=params)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    # and through an R1-style penalty: grad of ||d aug(x)^2 / dx||^2 exists and is finite
    y = fn(x).pow(2).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0


# -- colour and cutout ----------------------------------------------------------
def test_colour_ops_move_statistics_as_expected():
    torch.manual_seed(2)
    x = (torch.rand(2, 1, 16, 16) * 1.6 - 0.8).requires_grad_()
    one = torch.ones(2)
    b = adjust_brightness(x, 0.3 * one)
    assert torch.allclose(b.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)) + 0.3, atol=1e-6)
    c = adjust_contrast(x, 2.0 * one)
    assert torch.allclose(c.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(c.std(dim=(1, 2, 3)), 2 * x.std(dim=(1, 2, 3)), rtol=1e-5)
    g = adjust_gamma(x, 2.0 * one)  # v**2 < v on (0, 1): darker
    assert bool((g.mean(dim=(1, 2, 3)) < x.mean(dim=(1, 2, 3)) - 0.05).all())
    assert torch.equal(adjust_gamma(x, one), x)
    for out in (b, c, g):
        assert out.shape == x.shape
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_gamma_keeps_unit_slope_out_of_range():
    x = torch.tensor([-1.5, -0.5, 0.5, 1.5]).view(4, 1, 1, 1).requires_grad_()
    y = adjust_gamma(x, torch.full((4,), 2.0))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad[0].item() == pytest.approx(1.0) and grad[3].item() == pytest.approx(1.0)
    assert y[3].item() == pytest.approx(1.5)  # above range: shifted by 0, continuous at 1
    assert grad[1].item() == pytest.approx(0.5)  # d/dx of 2((x+1)/2)^2 - 1 at x=-0.5


def test_cutout_zeroes_a_square_only():
    p = _params(1, dtype=torch.float32, cutout_size=0.5)
    p.cutout_center = torch.tensor([[0.5, 0.5]])
    mask = cutout_mask(p, 8, 8, torch.float32)[0, 0]
    expected = torch.ones(8, 8)
    expected[2:6, 2:6] = 0
    assert torch.equal(mask, expected)
    x = torch.randn(1, 1, 8, 8)
    out = AugmentPipe(p=1.0)(x, params=p)
    assert torch.equal(out[0, 0], x[0, 0] * expected)


# -- sampling -------------------------------------------------------------------
def test_sampling_rate_tracks_p_and_generator_is_reproducible():
    pipe = AugmentPipe(p=0.5, cutout=0.0)
    params = pipe.sample_params(4000, 32, 32, generator=torch.Generator().manual_seed(0))
    assert abs(float((params.scale != 1).float().mean()) - 0.5) < 0.04
    assert bool((params.cutout_size == 0).all()) and bool((params.xflip == 0).all())
    assert bool((params.translate == params.translate.round()).all())
    assert float(params.translate.abs().max()) <= 4
    x = torch.randn(4, 1, 16, 16)
    a = pipe(x, generator=torch.Generator().manual_seed(3))
    b = pipe(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)


# -- controller -----------------------------------------------------------------
def test_controller_raises_p_when_d_overfits_and_clamps_at_one():
    ctrl = AdaController(AugmentPipe(), interval=4, ada_kimg=500)
    updated = [ctrl.accumulate(torch.full((8, 1), 3.0)) for _ in range(4)]
    assert updated == [False, False, False, True]
    assert ctrl.rt == 1.0
    assert ctrl.p == pytest.approx(32 / 500_000)
    fast = AdaController(AugmentPipe(), interval=2, ada_kimg=0.05)  # 50 images sweep 0 -> 1
    history = []
    for _ in range(10):
        fast.accumulate(torch.ones(8))
        history.append(fast.p)
    assert history == sorted(history) and history[-1] == 1.0


def test_controller_lowers_p_when_rt_below_target_and_clamps_at_zero():
    ctrl = AdaController(AugmentPipe(p=0.02), interval=2, ada_kimg=0.1)
    logits = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 2.0])  # r_t = 0
    ctrl.accumulate(logits)
    ctrl.accumulate(logits)
    assert ctrl.rt == 0.0
    assert ctrl.p == 0.0
    mid = AdaController(AugmentPipe(p=0.5), interval=1, ada_kimg=1.0)
    mid.accumulate(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert mid.p == pytest.approx(0.5 - 4 / 1000)


def test_controller_state_dict_resumes_identically():
    gen = torch.Generator().manual_seed(4)
    stream = [torch.randn(8, generator=gen) + 0.6 for _ in range(23)]
    a = AdaController(AugmentPipe(), interval=4, ada_kimg=0.5)
    for logits in stream[:10]:  # stops mid-interval
        a.accumulate(logits)
    state = a.state_dict()
    b = AdaController(AugmentPipe(), interval=4, ada_kimg=0.5)
    b.load_state_dict(state)
    assert b.p == a.p and b.rt == a.rt
    for logits in stream[10:]:
        assert a.accumulate(logits) == b.accumulate(logits)
        assert a.p == b.p and a.rt == b.rt
    assert a.num_updates == b.num_updates == 5
    with pytest.raises(KeyError):
        b.load_state_dict({"p": 0.1})
