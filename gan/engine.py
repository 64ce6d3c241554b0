"""One GAN training step: networks, optimisers, loss phases, ADA and the generator EMA.

:class:`GanEngine` owns G, D, G_ema, their Adam optimisers, the
:class:`~gan.loss.GanLoss`, the ADA pipe and controller. :meth:`GanEngine.step`
runs one optimisation round on one batch of reals, following Karras et al.
2020 (StyleGAN2 / ADA):

1. ``Gmain``; ``Greg`` (path length) when ``step % pl_interval == 0``;
2. ``Dmain``; ``Dreg`` (R1) when ``step % r1_interval == 0``;

each phase: zero the gradients, back-propagate ``gain ×`` its loss (``gain`` =
the interval for the lazy phases), average the gradients over processes
(:func:`gan.sync.sync_gradients`), take an optimiser step. Adam's lr and betas
of a network with lazy regularisation are adjusted by ``mb_ratio = k / (k + 1)``
(``lr · mb_ratio``, ``beta ** mb_ratio``) so that the regularised optimiser
moves as an unregularised one would. Then ``w_avg`` (and the path-length mean)
are averaged over processes, ADA's statistics gathered, and G_ema moves toward G
with ``β = 0.5 ** (batch / ema_nimg)``, ``ema_nimg = min(ema_kimg · 1000,
ema_rampup · cur_nimg)``.

Latents, generated conditions (rows of the real condition table), noise, style
mixing and augmentation all draw from the global torch RNG, which the caller
seeds per step: the engine's state (:meth:`state_dict`) plus the step index
determine the next step exactly.

On CUDA, ``amp`` runs the phases under bf16 autocast (weights, gradients and
optimiser state stay float32; bf16 needs no loss scaling) and ``channels_last``
converts G, D and the reals to NHWC.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from gan.augment import AdaController, AugmentPipe
from gan.config import GanConfig, build_discriminator, build_generator
from gan.layers import assert_shape
from gan.loss import GanLoss, r1_gamma_for, update_ema
from gan.sync import average_, broadcast_module_, sync_gradients, world_size
from gan.train_config import GanTrainConfig
from reid_core.device import autocast_context

log = logging.getLogger(__name__)

Stats = dict[str, Tensor]


def lazy_adam(module: nn.Module, lr: float, betas: tuple[float, float], reg_interval: int | None) -> torch.optim.Adam:
    """Adam for a network regularised every ``reg_interval`` steps (None: not lazily regularised)."""
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    return torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio),
                            eps=1e-8)


def signs_as_logits(mean_sign: Tensor, n: int) -> Tensor:
    """A length-``n`` tensor whose signs sum to ``round(mean_sign · n)``.

    :class:`~gan.loss.GanLoss` reports ``mean(sign(D(real)))`` rather than the
    logits; :meth:`AdaController.accumulate` needs only the sum of signs and
    the count, which this rebuilds on the device (no synchronisation).
    """
    total = torch.round(mean_sign.detach().float() * n)
    idx = torch.arange(n, device=total.device, dtype=total.dtype)
    return torch.sign(total) * (idx < total.abs()).to(total.dtype)


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """G_ema decay per step: half-life ``ema_kimg`` thousand images, ramped up early on."""
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


class GanEngine:
    """G, D, G_ema, optimisers, loss and ADA for one process (see module docstring)."""

    def __init__(self, gan_cfg: GanConfig, cfg: GanTrainConfig, device: torch.device) -> None:
        self.gan_cfg, self.cfg, self.device = gan_cfg, cfg, torch.device(device)
        self.world_size = world_size()
        if cfg.batch % self.world_size:
            raise ValueError(f"batch {cfg.batch} must be divisible by the {self.world_size} processes")
        self.batch_per_rank = cfg.batch // self.world_size
        cuda = self.device.type == "cuda"
        self.amp, self.channels_last = cfg.amp and cuda, cfg.channels_last and cuda
        with torch.random.fork_rng(devices=[]):  # initial weights from cfg.seed, the global RNG left as it was
            torch.manual_seed(cfg.seed)
            self.G = build_generator(gan_cfg).train().to(self.device)
            self.D = build_discriminator(gan_cfg).train().to(self.device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        broadcast_module_(self.G)  # identical anyway; cheap insurance
        broadcast_module_(self.D)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.pipe = AugmentPipe().to(self.device) if cfg.augment else None
        self.ada = (AdaController(self.pipe, target=cfg.ada_target, interval=cfg.ada_interval, ada_kimg=cfg.ada_kimg)
                    if self.pipe is not None else None)
        self.r1_gamma = cfg.r1_gamma if cfg.r1_gamma is not None else r1_gamma_for(gan_cfg.resolution, cfg.batch)
        self.loss = GanLoss(self.G, self.D, self.pipe, r1_gamma=self.r1_gamma,
                            style_mixing_prob=cfg.style_mixing_prob, pl_weight=cfg.pl_weight,
                            pl_batch_shrink=cfg.pl_batch_shrink, cond_ramp_kimg=cfg.cond_ramp_kimg)
        self.g_reg_interval = cfg.pl_interval if cfg.pl_weight > 0 else None
        self.d_reg_interval = cfg.r1_interval if self.r1_gamma > 0 else None
        self.opt_G = lazy_adam(self.G, cfg.lr_g, cfg.betas, self.g_reg_interval)
        self.opt_D = lazy_adam(self.D, cfg.lr_d, cfg.betas, self.d_reg_interval)
        if cuda:
            torch.backends.cudnn.benchmark = True

    # ------------------------------------------------------------------ the step
    def phases(self, step: int) -> list[tuple[str, nn.Module, torch.optim.Optimizer, int]]:
        """``(phase, network, optimiser, gain)`` due at ``step``, in order."""
        out: list[tuple[str, nn.Module, torch.optim.Optimizer, int]] = [("Gmain", self.G, self.opt_G, 1)]
        if self.g_reg_interval and step % self.g_reg_interval == 0:
            out.append(("Greg", self.G, self.opt_G, self.g_reg_interval))
        out.append(("Dmain", self.D, self.opt_D, 1))
        if self.d_reg_interval and step % self.d_reg_interval == 0:
            out.append(("Dreg", self.D, self.opt_D, self.d_reg_interval))
        return out

    def step(self, reals: Tensor, real_c: Tensor, c_pool: Tensor, step: int, cur_nimg: int) -> Stats:
        """One round of phases on this rank's reals (B×1×R×R in [-1, 1]) and their conditions.

        ``c_pool`` (M × c_dim) is where generated conditions are drawn from;
        ``cur_nimg`` counts real images shown before this step (all ranks).
        """
        b, r = self.batch_per_rank, self.gan_cfg.resolution
        assert_shape(reals, [b, self.gan_cfg.img_channels, r, r], "reals")
        assert_shape(real_c, [b, self.gan_cfg.c_dim], "real_c")
        assert_shape(c_pool, [None, self.gan_cfg.c_dim], "c_pool")
        stats: Stats = {}
        for phase, net, opt, gain in self.phases(step):
            gen_z = torch.randn(b, self.gan_cfg.z_dim, device=self.device)
            gen_c = c_pool[torch.randint(len(c_pool), (b,), device=self.device)]
            opt.zero_grad(set_to_none=True)
            with autocast_context(self.device, self.amp):
                out = self.loss.accumulate_gradients(phase, reals, real_c, gen_z, gen_c, float(gain), cur_nimg)
            sync_gradients(net.parameters())
            opt.step()
            stats.update(out)
        self._after_step(stats, cur_nimg)
        return stats

    def _after_step(self, stats: Stats, cur_nimg: int) -> None:
        average_(b for name, b in self.G.named_buffers() if name.endswith("w_avg"))
        if self.g_reg_interval and self.world_size > 1:
            average_([self.loss.pl_mean])
        if self.ada is not None:  # "signs/real" comes from Dmain, which runs every step
            self.ada.accumulate(signs_as_logits(stats["signs/real"], self.batch_per_rank))
        update_ema(self.G_ema, self.G, ema_beta(self.cfg.batch, cur_nimg, self.cfg.ema_kimg, self.cfg.ema_rampup))

    # ------------------------------------------------------------------ state
    @property
    def augment_p(self) -> float:
        return self.pipe.p if self.pipe is not None else 0.0

    @property
    def ada_rt(self) -> float | None:
        return self.ada.rt if self.ada is not None else None

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the counters (tensors alias the live ones: save at once)."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "ada": self.ada.state_dict() if self.ada is not None else None, "loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (onto this engine's device and memory layout)."""
        from reid_core.train.optim import match_state_layout

        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("opt_G", "opt_D"):
            opt = getattr(self, name)
            opt.load_state_dict(state[name])
            match_state_layout(opt)
        if self.ada is not None:
            if state.get("ada") is None:
                raise ValueError("the resume state has no ADA state but augment is on")
            self.ada.load_state_dict(state["ada"])
        self.loss.load_state_dict(state["loss"])
        self.loss.pl_mean = self.loss.pl_mean.to(self.device)
