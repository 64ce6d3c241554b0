"""Pair saliency: the gradient of the embedding distance w.r.t. each image, checked against models whose
gradient is known in closed form, and on a real (tiny) embedder for shapes, ranges and side effects."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reid_core  # noqa: F401  (before timm)
from reid_core.model import Embedder
from reid_core.saliency import pair_saliency, smooth_and_normalise
from reid_core.ui.overlay import heat_overlay

H = W = 16


class LeftHalfLinear(nn.Module):
    """e = M · vec(x[:, :, :, :W/2]): the right half of the image cannot affect the embedding."""

    def __init__(self, dim: int = 5, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.M = nn.Parameter(torch.randn(dim, H * W // 2, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :, : W // 2].reshape(len(x), -1) @ self.M.T


class Flatten(nn.Module):
    """e = vec(x): the distance is the pixel distance, its gradient (a - b)/‖a - b‖."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1) + self.dummy


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((H, W)).astype(np.float32), rng.random((H, W)).astype(np.float32)


def test_linear_model_gradient_matches_the_closed_form():
    model = LeftHalfLinear()
    a, b = _images()
    sal = pair_saliency(model, a, b, sigma=0, size=H)
    M = model.M.detach().double().numpy()
    diff = M @ (a[:, : W // 2] - b[:, : W // 2]).reshape(-1).astype(np.float64)
    dist = np.linalg.norm(diff)
    grad_left = np.abs(M.T @ diff / dist).reshape(H, W // 2)
    expected = np.zeros((H, W))
    expected[:, : W // 2] = grad_left / grad_left.max()
    assert sal.distance == pytest.approx(dist, rel=1e-5)
    np.testing.assert_allclose(sal.map_a, expected, atol=1e-5)
    np.testing.assert_allclose(sal.map_b, expected, atol=1e-5)  # ∂d/∂b = -∂d/∂a
    assert not sal.map_a[:, W // 2:].any()  # pixels that cannot change the output get exactly zero


def test_saliency_is_where_the_images_differ():
    a = np.full((H, W), 0.5, np.float32)
    b = a.copy()
    b[4:8, 10:14] = 0.9
    b[5, 11] = 0.1  # a bigger difference: the peak
    sharp = pair_saliency(Flatten(), a, b, sigma=0, size=H)
    outside = np.ones((H, W), bool)
    outside[4:8, 10:14] = False
    assert not sharp.map_a[outside].any() and (sharp.map_a[~outside] > 0).all()
    assert sharp.map_a[5, 11] == 1.0 and sharp.distance == pytest.approx(np.linalg.norm(a - b), rel=1e-5)
    smooth = pair_saliency(Flatten(), a, b, sigma=1.0, size=H)
    near = np.zeros((H, W), bool)
    near[1:11, 7:16] = True  # the patch grown by 3σ
    assert smooth.map_a[near].sum() > 0.99 * smooth.map_a.sum()
    assert np.unravel_index(smooth.map_a.argmax(), (H, W)) in {(5, 11), (5, 12), (6, 11), (6, 12)}


def test_identical_images_give_zero_maps_not_nan():
    a, _ = _images()
    sal = pair_saliency(Flatten(), a, a.copy(), size=H)
    assert np.isfinite(sal.map_a).all() and not sal.map_a.any() and sal.distance < 1e-5


def test_real_embedder_maps_have_each_inputs_shape_and_leave_the_model_untouched():
    torch.manual_seed(0)
    model = Embedder(backbone="resnet10t", embedding_dim=8, image_size=32).train()
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (48, 48), dtype=np.uint8)  # bigger than the model input: resized in the graph
    b = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    sal = pair_saliency(model, a, b)
    assert sal.map_a.shape == (48, 48) and sal.map_b.shape == (32, 32)
    for m in (sal.map_a, sal.map_b):
        assert m.dtype == np.float32 and np.isfinite(m).all() and m.min() >= 0 and m.max() == pytest.approx(1.0)
    assert model.training  # the training flag is restored
    assert all(p.grad is None for p in model.parameters())  # no gradient left in the shared model
    with torch.no_grad():  # the distance is that of the embeddings of the resized inputs, in eval mode
        xa = torch.nn.functional.interpolate(torch.from_numpy(a / 255.0).float()[None, None], size=(32, 32),
                                             mode="bilinear", align_corners=False)
        e = model.eval()(torch.cat([xa, torch.from_numpy(b / 255.0).float()[None, None]]))
    assert sal.distance == pytest.approx(float((e[0] - e[1]).norm()), rel=1e-4)


def test_smoothing_normalising_and_overlay():
    m = np.zeros((9, 9))
    m[4, 4] = 3.0
    out = smooth_and_normalise(m, 1.0)
    assert out.max() == pytest.approx(1.0) and out[4, 4] == out.max() and out[0, 0] < 0.01
    assert not smooth_and_normalise(np.zeros((4, 4)), 2.0).any()
    gray = np.full((9, 9), 100, np.uint8)
    rgb = heat_overlay(gray, out)
    assert rgb.shape == (9, 9, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 100).all()  # cold pixels keep the radiograph
    assert rgb[4, 4, 0] > rgb[4, 4, 2]  # hot pixels turn red/yellow
    with pytest.raises(ValueError, match="shape"):
        heat_overlay(gray, np.zeros((4, 4)))
