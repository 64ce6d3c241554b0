"""Conditional StyleGAN2-style generator and discriminator for 1-channel radiographs.

* :class:`MappingNetwork` — ``(z, c) → w``; ``c`` (an identity embedding) goes
  through an equalised linear embedding, both parts are 2nd-moment normalised
  and concatenated. Tracks ``w_avg`` for the truncation trick.
* :class:`SynthesisNetwork` — skip architecture: a learned 4×4 constant, one
  block per resolution (up-sampling modulated conv + modulated conv, each
  followed by noise, bias and leaky ReLU), and a ``to_gray`` 1×1 layer per block
  whose outputs are FIR up-sampled and summed. Output is linear (no tanh),
  roughly in [-1, 1] once trained.
* :class:`Generator` — mapping + synthesis; ``ws`` (N, num_ws, w_dim) is the
  interface between them (style mixing, inversion).
* :class:`Discriminator` — residual architecture, minibatch-std epilogue and a
  projection head: ``score = <features, cmap(c)> / sqrt(cmap_dim)``.

``cond_scale`` (mapping and discriminator) multiplies the *normalised*
embedding of ``c``: scaling ``c`` itself would be undone by the normalisation.
At 0 both networks are unconditional, which is how the loss ramps from
unconditional to conditional training.

Configuration (typed presets and the ``build_generator`` / ``build_discriminator``
factories) lives in :mod:`gan.config`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from gan.layers import (
    DEFAULT_FIR,
    EqualConv2d,
    EqualLinear,
    MinibatchStd,
    ModulatedConv2d,
    NoiseInput,
    NoiseMode,
    assert_shape,
    bias_act,
    make_fir_kernel,
    normalize_2nd_moment,
    upsample2d,
)


def _as_column(scale: float | torch.Tensor, ref: torch.Tensor) -> float | torch.Tensor:
    """A scalar stays a scalar; a (N,) tensor becomes (N, 1) to scale rows of ``ref``."""
    if isinstance(scale, torch.Tensor):
        return scale.to(device=ref.device, dtype=ref.dtype).reshape(-1, 1)
    return float(scale)


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: ``min(channel_base // resolution, channel_max)``."""
    return max(1, min(channel_base // resolution, channel_max))


def block_resolutions(img_resolution: int) -> list[int]:
    """``[4, 8, …, img_resolution]``; the resolution must be a power of two ≥ 8."""
    log2 = int(round(math.log2(img_resolution)))
    if img_resolution < 8 or 2**log2 != img_resolution:
        raise ValueError(f"img_resolution must be a power of two ≥ 8, got {img_resolution}")
    return [2**i for i in range(2, log2 + 1)]


# ---------------------------------------------------------------------------
# mapping
# ---------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """``(z, c) → w``: normalised z ‖ normalised embed(c), then an MLP with lr multiplier.

    With ``num_ws`` set, returns ``ws`` (N, num_ws, w_dim) (w broadcast) and
    keeps ``w_avg``, the EMA of w (updated when ``update_emas=True``) that
    truncation pulls toward: ``w_avg + psi · (w - w_avg)`` on the first
    ``truncation_cutoff`` ws (all when None). ``num_ws=None`` returns (N, w_dim)
    without truncation (the discriminator's condition mapping).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None = None,
        num_layers: int = 2,
        embed_features: int | None = None,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ) -> None:
        super().__init__()
        if z_dim <= 0 and c_dim <= 0:
            raise ValueError("MappingNetwork needs z_dim > 0 or c_dim > 0")
        if num_layers < 1:
            raise ValueError(f"num_layers must be ≥ 1, got {num_layers}")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        self.embed = EqualLinear(c_dim, embed_features) if c_dim > 0 else None
        dims = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(
            EqualLinear(a, b, activation="lrelu", lr_multiplier=lr_multiplier) for a, b in zip(dims[:-1], dims[1:])
        )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        cond_scale: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            assert z is not None, "z is required (z_dim > 0)"
            assert_shape(z, [None, self.z_dim], "mapping z")
            parts.append(normalize_2nd_moment(z.float()))
        if self.embed is not None:
            assert c is not None, "c is required (c_dim > 0)"
            assert_shape(c, [None, self.c_dim], "mapping c")
            y = normalize_2nd_moment(self.embed(c.float()))
            parts.append(y * _as_column(cond_scale, y))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)
        if update_emas and hasattr(self, "w_avg"):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1.0:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs w_avg (w_avg_beta=None disabled it)")
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)
        return ws


# ---------------------------------------------------------------------------
# synthesis
# ---------------------------------------------------------------------------
class SynthesisLayer(nn.Module):
    """Affine(w) → modulated 3×3 conv (demodulated, optional ×2 up) → noise → bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None, fir: Sequence[float] = DEFAULT_FIR, noise_seed: int = 0) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, demodulate=True, up=up, fir=fir)
        self.noise = NoiseInput(resolution, seed=noise_seed)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "random",
                noise: torch.Tensor | None = None, fused: bool | None = None) -> torch.Tensor:
        x = self.conv(x, self.affine(w), fused=fused)
        x = self.noise(x, noise_mode, noise)
        return bias_act(x, self.bias, "lrelu", clamp=self.conv_clamp)


class ToGray(nn.Module):
    """Affine(w) → modulated 1×1 conv without demodulation → bias (linear output)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        return bias_act(self.conv(x, self.affine(w), fused=fused), self.bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | up-conv) → conv → to_gray; adds to the up-sampled skip image.

    Uses ``num_conv + 1`` consecutive ws; the last (to_gray's) is shared with the
    next block's first conv, so the network needs ``2 · #blocks`` ws in all.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None, fir: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__()
        self.resolution, self.out_channels = resolution, out_channels
        seed = 2 * int(math.log2(resolution))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        conv_clamp=conv_clamp, fir=fir, noise_seed=seed)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, fir=fir, noise_seed=seed + 1)
        self.to_gray = ToGray(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("fir", make_fir_kernel(fir), persistent=False)
        self.num_conv = 1 if self.conv0 is None else 2

    def layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.conv0 is None else [self.conv0, self.conv1]

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: NoiseMode = "random", noise: Sequence[torch.Tensor | None] | None = None,
                fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        assert_shape(ws, [None, self.num_conv + 1, None], "SynthesisBlock ws")
        noise = [None] * self.num_conv if noise is None else list(noise)
        if self.conv0 is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, noise[0], fused)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode, noise[-1], fused)
        y = self.to_gray(x, ws[:, self.num_conv], fused)
        img = y if img is None else upsample2d(img, self.fir) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws (N, num_ws, w_dim) → image (N, img_channels, R, R)``, skip architecture."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 1, channel_base: int = 16384,
                 channel_max: int = 512, conv_clamp: float | None = None, fir: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.resolutions = block_resolutions(img_resolution)
        blocks, in_ch = [], 0
        for res in self.resolutions:
            out_ch = channels_for(res, channel_base, channel_max)
            blocks.append(SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, conv_clamp, fir))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per noisy layer, in order: the (1, H, W) shape an explicit noise tensor needs after the batch dim."""
        return [(1, b.resolution, b.resolution) for b in self.blocks for _ in b.layers()]

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "random",
                noise: Sequence[torch.Tensor] | None = None, fused_modconv: bool | None = None) -> torch.Tensor:
        """``noise``: one tensor per layer (see :meth:`noise_shapes`), overriding ``noise_mode``."""
        assert_shape(ws, [None, self.num_ws, self.w_dim], "synthesis ws")
        n_layers = len(self.noise_shapes())
        if noise is not None and len(noise) != n_layers:
            raise ValueError(f"expected {n_layers} noise tensors, got {len(noise)}")
        x = img = None
        w_idx = l_idx = 0
        for block in self.blocks:
            k = block.num_conv
            block_noise = None if noise is None else noise[l_idx:l_idx + k]
            x, img = block(x, img, ws[:, w_idx:w_idx + k + 1], noise_mode, block_noise, fused_modconv)
            w_idx, l_idx = w_idx + k, l_idx + k
        r = self.img_resolution
        assert_shape(img, [ws.shape[0], self.img_channels, r, r], "synthesis output")
        return img


class Generator(nn.Module):
    """``G(z, c) → image``: :class:`MappingNetwork` then :class:`SynthesisNetwork`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 1,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode = "random",
                noise: Sequence[torch.Tensor] | None = None, update_emas: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise)


# ---------------------------------------------------------------------------
# discriminator
# ---------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """Residual block: ``(skip_1×1↓(x) + conv3×3↓(conv3×3(x))) · √½``; the first block reads the image."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 conv_clamp: float | None = None, fir: Sequence[float] = DEFAULT_FIR) -> None:
        super().__init__()
        self.in_channels, self.img_channels = in_channels, img_channels
        self.from_gray = (EqualConv2d(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
                          if in_channels == 0 else None)
        self.conv0 = EqualConv2d(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 conv_clamp=conv_clamp, fir=fir)
        self.skip = EqualConv2d(tmp_channels, out_channels, 1, bias=False, down=2, fir=fir)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.from_gray is not None:
            assert_shape(x, [None, self.img_channels, None, None], "discriminator image")
            x = self.from_gray(x)
        g = math.sqrt(0.5)
        return self.skip(x, gain=g) + self.conv1(self.conv0(x), gain=g)


class DiscriminatorEpilogue(nn.Module):
    """4×4 features → minibatch std → conv 3×3 → fc → out fc (→ ``out_dim``)."""

    def __init__(self, channels: int, out_dim: int, mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = EqualConv2d(channels + mbstd_num_channels, channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualLinear(channels, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, [None, self.channels, 4, 4], "discriminator epilogue input")
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.out(self.fc(self.conv(x).flatten(1)))


class Discriminator(nn.Module):
    """``D(img, c) → score (N, 1)``: residual blocks, epilogue, projection onto ``cmap(c)``."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 1, channel_base: int = 16384,
                 channel_max: int = 512, cmap_dim: int | None = None, mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None, fir: Sequence[float] = DEFAULT_FIR,
                 mapping_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        resolutions = block_resolutions(img_resolution)[::-1]  # R, …, 4

        def ch(res: int) -> int:
            return channels_for(res, channel_base, channel_max)

        self.blocks = nn.ModuleList(
            DiscriminatorBlock(0 if i == 0 else ch(res), ch(res), ch(res // 2), img_channels, conv_clamp, fir)
            for i, res in enumerate(resolutions[:-1])
        )
        self.cmap_dim = (cmap_dim or ch(4)) if c_dim > 0 else 0
        self.mapping = (MappingNetwork(0, c_dim, self.cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {}))
                        if c_dim > 0 else None)
        self.epilogue = DiscriminatorEpilogue(ch(4), self.cmap_dim or 1, mbstd_group_size, mbstd_num_channels,
                                              conv_clamp)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None,
                cond_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        r = self.img_resolution
        assert_shape(img, [None, self.img_channels, r, r], "discriminator input")
        x = img
        for block in self.blocks:
            x = block(x)
        x = self.epilogue(x)
        if self.mapping is not None:
            assert c is not None, "c is required (c_dim > 0)"
            cmap = self.mapping(None, c, cond_scale=cond_scale)
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        assert_shape(x, [img.shape[0], 1], "discriminator output")
        return x

