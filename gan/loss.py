"""StyleGAN2 training objective: non-saturating logistic loss, lazy R1, path length, style mixing.

:class:`GanLoss` computes one phase at a time and back-propagates it into the
parameter gradients (the caller zeroes them, steps the optimisers and decides
the lazy-regularisation intervals, passing ``gain = interval`` to the reg phases):

* ``Gmain`` — ``softplus(-D(aug(G(z, c)), c))``; D's parameters are frozen.
* ``Greg``  — path-length penalty ``(|Jᵀy|₂ - a)²`` on a batch shrunk by
  ``pl_batch_shrink``, ``a`` an EMA (decay ``pl_decay``) of the lengths, weight
  ``pl_weight`` (0 disables the phase). ``J = ∂G/∂w``; ``y`` is Gaussian noise
  scaled by ``1/sqrt(H·W)``; the length is averaged over the ``num_ws`` layers.
* ``Dmain`` — ``softplus(D(aug(G(z, c)))) + softplus(-D(aug(x), c))``; the fakes
  are drawn without a graph, so no gradient reaches G.
* ``Dreg``  — R1: ``γ/2 · |∇ₓ D(aug(x), c)|²`` on reals (gradient w.r.t. the
  un-augmented images); γ = 0 disables it. :func:`r1_gamma_for` gives the
  limited-data paper's heuristic ``γ = 0.0002 · R² / batch``.

Style mixing: with probability ``style_mixing_prob`` (per batch) the ws from a
second z (same c) replace those from a random crossover index onward.

Conditional ramp: with ``cond_ramp_kimg > 0`` the condition's influence grows
linearly from 0 to 1 over that many thousand real images shown. The factor
multiplies the *normalised* condition embedding inside the mapping networks of
G and D (``cond_scale``); at 0 both are unconditional. Starting unconditional
and fading the condition in is a remedy for the mode collapse that conditioning
causes on small datasets (Shahbazi et al., "Collapse by Conditioning", 2022).

Stats are returned as detached 0-d tensors (no device sync); call ``.item()``
when logging.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gan.layers import assert_shape

log = logging.getLogger(__name__)

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")
AugmentPipe = Callable[[torch.Tensor], torch.Tensor]
Stats = dict[str, torch.Tensor]


def r1_gamma_for(resolution: int, batch: int) -> float:
    """R1 weight heuristic of Karras et al. 2020 (limited data): ``0.0002 · resolution² / batch``."""
    if resolution <= 0 or batch <= 0:
        raise ValueError(f"resolution and batch must be positive, got {resolution}, {batch}")
    return 0.0002 * resolution**2 / batch


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on ``module``'s parameters, then restore the flags."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """``θ_ema ← β·θ_ema + (1-β)·θ`` for parameters; buffers (w_avg, const noise) are copied."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    for (name_e, p_ema), (name, p) in zip(G_ema.named_parameters(), G.named_parameters(), strict=True):
        assert name_e == name, f"EMA parameter mismatch: {name_e} vs {name}"
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for (name_e, b_ema), (name, b) in zip(G_ema.named_buffers(), G.named_buffers(), strict=True):
        assert name_e == name, f"EMA buffer mismatch: {name_e} vs {name}"
        b_ema.copy_(b)


class GanLoss:
    """Phase-wise StyleGAN2 loss for a conditional ``G`` (:class:`~gan.networks.Generator`) and ``D``."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        augment_pipe: AugmentPipe | None = None,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 0.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        cond_ramp_kimg: float = 0.0,
    ) -> None:
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma, self.style_mixing_prob = float(r1_gamma), float(style_mixing_prob)
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = float(pl_weight), int(pl_batch_shrink), float(pl_decay)
        self.cond_ramp_kimg = float(cond_ramp_kimg)
        self.pl_mean = torch.zeros([])

    # -- state (pl_mean travels with checkpoints) -----------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean = state["pl_mean"].detach().clone().float()

    # -- building blocks ------------------------------------------------------
    def cond_scale(self, cur_nimg: int) -> float:
        """Condition factor after ``cur_nimg`` real images: ``min(1, cur_nimg / (1000 · cond_ramp_kimg))``."""
        if self.cond_ramp_kimg <= 0:
            return 1.0
        return min(1.0, max(0.0, cur_nimg / (1000.0 * self.cond_ramp_kimg)))

    def sample_ws(self, z: torch.Tensor, c: torch.Tensor, cond_scale: float = 1.0,
                  update_emas: bool = False) -> torch.Tensor:
        """``G.mapping(z, c)`` with style mixing (probability ``style_mixing_prob``, random crossover)."""
        mapping = self.G.mapping
        ws = mapping(z, c, update_emas=update_emas, cond_scale=cond_scale)
        num_ws = ws.shape[1]
        if self.style_mixing_prob > 0 and num_ws > 1 and torch.rand([]).item() < self.style_mixing_prob:
            cutoff = int(torch.randint(1, num_ws, []).item())
            ws2 = mapping(torch.randn_like(z), c, update_emas=False, cond_scale=cond_scale)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, cond_scale: float = 1.0) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, cond_scale=cond_scale)

    # -- phases ---------------------------------------------------------------
    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor,
                             gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float, cur_nimg: int) -> Stats:
        """Back-propagate ``gain ×`` the ``phase`` loss into the right network; return its stats."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        assert_shape(real_img, [None, None, None, None], "real_img")
        assert_shape(gen_z, [None, None], "gen_z")
        if real_c.shape[0] != real_img.shape[0] or gen_c.shape[0] != gen_z.shape[0]:
            raise ValueError("condition batch sizes must match their images / latents")
        alpha = self.cond_scale(cur_nimg)
        stats: Stats = {"cond_scale": torch.tensor(alpha)}
        if phase == "Gmain":
            stats.update(self._g_main(gen_z, gen_c, gain, alpha))
        elif phase == "Greg" and self.pl_weight > 0:
            stats.update(self._g_pl(gen_z, gen_c, gain, alpha))
        elif phase == "Dmain":
            stats.update(self._d_main(real_img, real_c, gen_z, gen_c, gain, alpha))
        elif phase == "Dreg" and self.r1_gamma > 0:
            stats.update(self._d_r1(real_img, real_c, gain, alpha))
        return stats

    def _g_main(self, z: torch.Tensor, c: torch.Tensor, gain: float, alpha: float) -> Stats:
        with frozen(self.D):
            img = self.G.synthesis(self.sample_ws(z, c, alpha, update_emas=True))
            logits = self.run_D(img, c, alpha)
            loss = F.softplus(-logits).mean()
            (loss * gain).backward()
        return {"loss/G": loss.detach(), "scores/fake": logits.detach().mean()}

    def _g_pl(self, z: torch.Tensor, c: torch.Tensor, gain: float, alpha: float) -> Stats:
        n = max(1, z.shape[0] // self.pl_batch_shrink)
        ws = self.sample_ws(z[:n], c[:n], alpha)
        img = self.G.synthesis(ws)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # (n,)
        self.pl_mean = self.pl_mean.to(lengths.device)
        pl_mean = self.pl_mean.lerp(lengths.detach().mean(), self.pl_decay)
        self.pl_mean = pl_mean.detach()
        penalty = (lengths - pl_mean).square()
        loss = penalty.mean() * self.pl_weight
        (loss * gain).backward()
        return {"loss/pl": loss.detach(), "pl/penalty": penalty.detach().mean(), "pl/mean": self.pl_mean.clone()}

    def _d_main(self, real: torch.Tensor, real_c: torch.Tensor, z: torch.Tensor, gen_c: torch.Tensor,
                gain: float, alpha: float) -> Stats:
        with torch.no_grad():
            fake = self.G.synthesis(self.sample_ws(z, gen_c, alpha))
        fake_logits = self.run_D(fake, gen_c, alpha)
        real_logits = self.run_D(real.detach(), real_c, alpha)
        loss_fake = F.softplus(fake_logits).mean()
        loss_real = F.softplus(-real_logits).mean()
        ((loss_fake + loss_real) * gain).backward()
        return {
            "loss/D": (loss_fake + loss_real).detach(),
            "loss/D_real": loss_real.detach(),
            "loss/D_fake": loss_fake.detach(),
            "scores/real": real_logits.detach().mean(),
            "scores/fake": fake_logits.detach().mean(),
            "signs/real": real_logits.detach().sign().mean(),  # ADA's overfitting heuristic r_t
        }

    def _d_r1(self, real: torch.Tensor, real_c: torch.Tensor, gain: float, alpha: float) -> Stats:
        x = real.detach().requires_grad_(True)
        logits = self.run_D(x, real_c, alpha)
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3])
        loss = penalty.mean() * (self.r1_gamma / 2)
        (loss * gain).backward()
        return {"loss/r1": loss.detach(), "r1_penalty": penalty.detach().mean(),
                "scores/real": logits.detach().mean()}
