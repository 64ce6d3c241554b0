"""Building blocks of the StyleGAN2-style generator and discriminator.

Written from the published method (Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN", 2020, and "Training Generative Adversarial Networks
with Limited Data", 2020) in plain PyTorch ops, no custom kernels.

* **Equalised learning rate** (:class:`EqualLinear`, :class:`EqualConv2d`):
  parameters are stored as ``N(0, 1/lr_multiplier²)`` and scaled at run time by
  ``lr_multiplier / sqrt(fan_in)``, so the effective weight starts as
  ``N(0, 1/fan_in)`` and the optimiser's step size is multiplied by
  ``lr_multiplier`` (0.01 in the mapping network).
* **FIR resampling** (:func:`upsample2d`, :func:`downsample2d`): a separable
  binomial filter (``[1, 3, 3, 1]`` by default, unit DC gain) applied as a
  depthwise ``conv_transpose2d`` (×2 up, gain 4) or ``conv2d`` (stride 2 down).
  Pixel centres stay aligned: up-sampled pixel ``n`` sits at input coordinate
  ``(n + ½)/2`` and down-sampled pixel ``j`` at ``2j + 1``.
* **Modulated convolution** (:class:`ModulatedConv2d`): per-sample styles scale
  the input channels of a shared kernel; demodulation rescales each output
  channel to unit expected variance.
* :class:`NoiseInput`, :class:`MinibatchStd` and :func:`bias_act` (bias,
  leaky ReLU 0.2 with gain √2, optional clamp).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEFAULT_FIR: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

Activation = Literal["linear", "lrelu"]
NoiseMode = Literal["random", "const", "none"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def assert_shape(tensor: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``shape`` (``None`` = any size)."""
    ok = tensor.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, tensor.shape))
    if not ok:
        want = ", ".join("*" if s is None else str(s) for s in shape)
        raise ValueError(f"{name}: expected shape ({want}), got {tuple(tensor.shape)}")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    act: Activation = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(act(x + bias) · gain)``; ``lrelu`` carries the extra √2 gain; bias on dim 1."""
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif act == "linear":
        x = x * gain if gain != 1.0 else x
    else:
        raise ValueError(f"unknown activation {act!r}")
    return x.clamp(-clamp, clamp) if clamp is not None else x


# ---------------------------------------------------------------------------
# FIR resampling
# ---------------------------------------------------------------------------
def make_fir_kernel(taps: Sequence[float] = DEFAULT_FIR) -> torch.Tensor:
    """Outer product of ``taps`` with itself, normalised to sum 1 (unit DC gain).

    Even lengths only: they keep the ×2 resampling grids aligned.
    """
    values = list(taps)  # checked as numbers, not tensors: the kernel can then be built on the meta device
    if (len(values) < 2 or len(values) % 2 or not all(isinstance(v, (int, float)) for v in values)
            or sum(values) <= 0):
        raise ValueError(f"FIR taps must be an even-length 1-D sequence with positive sum, got {taps}")
    f = torch.as_tensor(values, dtype=torch.float32)
    k = torch.outer(f, f)
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The kernel repeated once per channel of ``x``: a (C, 1, K, K) depthwise weight."""
    return kernel.to(device=x.device, dtype=x.dtype)[None, None].repeat(x.shape[1], 1, 1, 1)


def fir_filter2d(
    x: torch.Tensor, kernel: torch.Tensor, padding: int | tuple[int, int, int, int] = 0, stride: int = 1
) -> torch.Tensor:
    """Depthwise 2-D convolution of ``x`` (N, C, H, W) with ``kernel`` (K, K).

    ``padding`` is zero padding, an int or ``(left, right, top, bottom)``.
    """
    assert_shape(x, [None, None, None, None], "fir_filter2d input")
    pad = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    if any(pad):
        x = F.pad(x, pad)
    weight = _depthwise(kernel.flip([0, 1]), x)  # flip: true convolution, not correlation
    return F.conv2d(x, weight, stride=stride, groups=x.shape[1])


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 up-sampling: zero insertion then FIR with gain 4, (N, C, H, W) → (N, C, 2H, 2W).

    Equivalent to inserting zeros after every sample, padding ``K/2`` before and
    ``K/2 - 1`` after, and convolving with ``4 · kernel``; done in one depthwise
    ``conv_transpose2d`` (stride 2, padding ``K/2 - 1``).
    """
    n, c, h, w = x.shape
    k = kernel.shape[0]
    weight = _depthwise(kernel * 4.0, x)
    y = F.conv_transpose2d(x, weight, stride=2, padding=k // 2 - 1, groups=c)
    assert_shape(y, [n, c, 2 * h, 2 * w], "upsample2d output")
    return y


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 down-sampling: FIR low-pass then stride 2, (N, C, H, W) → (N, C, H/2, W/2)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"downsample2d needs even spatial size, got {(h, w)}")
    y = fir_filter2d(x, kernel, padding=kernel.shape[0] // 2 - 1, stride=2)
    assert_shape(y, [n, c, h // 2, w // 2], "downsample2d output")
    return y


# ---------------------------------------------------------------------------
# equalised-learning-rate layers
# ---------------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate and fused bias + activation."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: Activation = "linear",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The weight actually applied: stored weight × ``lr_multiplier / sqrt(fan_in)``."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, [None, self.in_features], "EqualLinear input")
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, self.effective_weight().t())
        return bias_act(F.linear(x, self.effective_weight()), b, self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv layer with equalised learning rate, optional FIR ×2 up/down, bias + activation.

    ``up=2``: FIR up-sample, then convolve ("same" padding). ``down=2``: FIR blur
    padded by ``K/2`` and a stride-2 convolution without padding (1×1 kernels:
    FIR down-sample, then convolve), so the output grid is that of
    :func:`downsample2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: Activation = "linear",
        up: int = 1,
        down: int = 1,
        fir: Sequence[float] = DEFAULT_FIR,
        conv_clamp: float | None = None,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if up not in (1, 2) or down not in (1, 2) or (up == 2 and down == 2):
            raise ValueError(f"up/down must be 1 or 2 and not both 2, got up={up}, down={down}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size**2)
        self.bias_gain = lr_multiplier
        self.register_buffer("fir", make_fir_kernel(fir), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        assert_shape(x, [None, self.in_channels, None, None], "EqualConv2d input")
        w = self.weight * self.weight_gain
        pad = self.kernel_size // 2
        if self.up == 2:
            x = F.conv2d(upsample2d(x, self.fir), w, padding=pad)
        elif self.down == 2 and self.kernel_size == 1:
            x = F.conv2d(downsample2d(x, self.fir), w)
        elif self.down == 2:
            h = x.shape[2]
            x = F.conv2d(fir_filter2d(x, self.fir, padding=self.fir.shape[0] // 2), w, stride=2)
            assert_shape(x, [None, self.out_channels, h // 2, None], "EqualConv2d down output")
        else:
            x = F.conv2d(x, w, padding=pad)
        b = self.bias * self.bias_gain if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, self.activation, gain=gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}→{self.out_channels}, k={self.kernel_size}, act={self.activation}, "
                f"up={self.up}, down={self.down}")


# ---------------------------------------------------------------------------
# modulated convolution, noise, minibatch std
# ---------------------------------------------------------------------------
class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and FIR ×2 up-sampling.

    ``forward(x (N, Cin, H, W), styles (N, Cin))``. The effective kernel of
    sample ``n`` is ``w[o, i] · s[n, i]``, demodulated by
    ``1 / sqrt(Σ_{i,k} (w[o, i, k] · s[n, i])² + ε)``. Two equivalent paths:
    *fused* (per-sample kernels in one grouped convolution, groups = N) and
    *unfused* (scale the input, shared convolution, scale the output), which
    is usually faster to back-propagate. ``fused=None`` picks fused in
    inference and unfused while training.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        demodulate: bool = True,
        up: int = 1,
        fir: Sequence[float] = DEFAULT_FIR,
    ) -> None:
        super().__init__()
        if up not in (1, 2):
            raise ValueError(f"up must be 1 or 2, got {up}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.up = demodulate, up
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("fir", make_fir_kernel(fir), persistent=False)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        n = x.shape[0]
        assert_shape(x, [n, self.in_channels, None, None], "ModulatedConv2d input")
        assert_shape(styles, [n, self.in_channels], "ModulatedConv2d styles")
        if self.up == 2:
            x = upsample2d(x, self.fir)
        h, w_ = x.shape[2:]
        fused = (not self.training) if fused is None else fused
        weight = self.weight * self.weight_gain  # (O, I, k, k)
        pad = self.kernel_size // 2
        if fused:
            wb = weight.unsqueeze(0) * styles.to(weight.dtype)[:, None, :, None, None]  # (N, O, I, k, k)
            if self.demodulate:
                wb = wb * (wb.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
            y = F.conv2d(x.reshape(1, n * self.in_channels, h, w_),
                         wb.reshape(n * self.out_channels, self.in_channels, self.kernel_size, self.kernel_size),
                         padding=pad, groups=n)
            y = y.reshape(n, self.out_channels, h, w_)
        else:
            y = F.conv2d(x * styles[:, :, None, None], weight, padding=pad)
            if self.demodulate:
                dcoef = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (N, O)
                y = y * dcoef[:, :, None, None]
        assert_shape(y, [n, self.out_channels, h, w_], "ModulatedConv2d output")
        return y

    def extra_repr(self) -> str:
        return f"{self.in_channels}→{self.out_channels}, k={self.kernel_size}, demod={self.demodulate}, up={self.up}"


class NoiseInput(nn.Module):
    """Adds per-pixel Gaussian noise (one map, broadcast over channels) × a learned strength.

    ``noise_mode``: ``'random'`` draws fresh noise, ``'const'`` uses the fixed
    buffer ``noise_const`` (drawn once from ``seed`` with a local generator),
    ``'none'`` adds nothing. An explicit ``noise`` tensor (N or 1, 1, H, W)
    overrides the mode, for reproducible sampling and inversion.
    """

    def __init__(self, resolution: int, seed: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        self.strength = nn.Parameter(torch.zeros([]))
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("noise_const", torch.randn(resolution, resolution, generator=gen))

    def forward(self, x: torch.Tensor, noise_mode: NoiseMode = "random",
                noise: torch.Tensor | None = None) -> torch.Tensor:
        r = self.resolution
        assert_shape(x, [None, None, r, r], "NoiseInput input")
        if noise is not None:
            assert_shape(noise, [None, 1, r, r], "explicit noise")
            if noise.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"explicit noise batch {noise.shape[0]} vs input batch {x.shape[0]}")
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, r, r, device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype)[None, None]
        elif noise_mode == "none":
            return x
        else:
            raise ValueError(f"unknown noise_mode {noise_mode!r}")
        return x + noise * self.strength


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


class MinibatchStd(nn.Module):
    """Appends ``num_channels`` feature maps holding the batch's per-group standard deviation.

    Consecutive samples form groups of ``group_size`` (the largest divisor of
    the batch size not above it, when the batch does not divide). Channels are
    split into ``num_channels`` slices; for each group and slice the std over
    the group (population variance + 1e-8, square-rooted) is averaged over the
    slice's channels and pixels and broadcast to every member's new map.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = self.num_channels
        if c % f:
            raise ValueError(f"MinibatchStd: {c} channels not divisible into {f} slices")
        g = _largest_divisor_at_most(n, self.group_size)
        y = x.reshape(n // g, g, f, c // f, h, w)
        y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)  # (n/g, f, c/f, h, w)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (n/g, f)
        y = y[:, None, :, None, None].expand(n // g, g, f, h, w).reshape(n, f, h, w)
        out = torch.cat([x, y.to(x.dtype)], dim=1)
        assert_shape(out, [n, c + f, h, w], "MinibatchStd output")
        return out

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
