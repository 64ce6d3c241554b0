"""One training step of the conditional autoencoder: :class:`CaeEngine`.

A batch holds ``batch / 2`` patients, two films each, as consecutive rows
(``[a0, b0, a1, b1, …]``): row ``i``'s partner is ``i ^ 1``. With ``x`` the
films in [-1, 1] and ``c`` their (frozen, precomputed) identity embeddings:

1. ``(mu, logvar) = E(x)``, ``n = mu + σ·ε``; conditions get noise
   (:func:`~gan.cae.losses.noisy_condition`, ``c_noise``).
2. **Reconstruction / cross-reconstruction**: ``x̂ = G(n, c')`` with ``c'`` the
   row's own ``c`` or, with probability ``cross_prob``, its partner film's
   (same patient, other study): identity must come through ``c``, since the
   partner's ``c`` carries none of this film's acquisition.
   ``L_rec = l1·|x̂ − x| + ssim·(1 − SSIM) + feat·L_feat(x̂, x)`` with ``L_feat``
   the distance in the frozen embedder's stage features (ramped in,
   :meth:`CaeTrainConfig.feat_scale`).
3. **Identity cycle** on the first ``n_swap`` rows: ``x̃ = G(n_i, c_k)`` with
   ``k`` a film of the next patient; ``L_id = 1 − cos(embedder(jitter(x̃)), c_k)``
   through the frozen embedder, and ``L_ncyc = mean (mu(E(x̃)) − mu_i)²`` keeps the
   nuisance of a swapped render readable as the original's. With ``recognisers``
   (``id_ensemble``), ``L_ens`` asks each of them too that ``x̃`` read as the target
   patient's real film (:func:`~gan.cae.losses.ensemble_identity_loss`; ramped in,
   :meth:`CaeTrainConfig.ensemble_scale`).
4. ``L_KL = KL(N(mu, σ²) ‖ N(0, I))``, so ``n`` can be sampled from the prior.
5. **Adversarial** (weight ramped in, :meth:`CaeTrainConfig.adv_scale`): the
   project's conditional discriminator on reals vs ``x̂`` and ``x̃``,
   non-saturating logistic loss, lazy R1 every ``r1_interval`` steps.

G and E take one Adam step on the sum; D its own. ``G_ema``/``E_ema`` follow
with a half-life of ``ema_kimg``. All randomness is drawn from the global torch
RNG, which the training loop seeds per step, so the state plus the step index
determine the next step exactly.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gan.cae.config import CaeTrainConfig
from gan.cae.encoder import EncoderConfig, NuisanceEncoder, kl_to_prior, sample_n
from gan.cae.losses import ensemble_identity_loss, feature_loss, identity_loss, ms_ssim_loss, noisy_condition
from gan.config import GanConfig, build_discriminator, build_generator
from gan.loss import frozen, update_ema

if TYPE_CHECKING:
    from reid_core.model import Embedder

Stats = dict[str, Tensor]


def partner_rows(batch: int) -> Tensor:
    """Row ``i``'s same-patient partner ``i ^ 1`` for a pair-ordered batch."""
    return torch.arange(batch) ^ 1


def other_patient_rows(batch: int) -> Tensor:
    """A film of the next patient for every row (``i + 2`` modulo the batch)."""
    return (torch.arange(batch) + 2) % batch


class CaeEngine:
    """G, E, D, their EMAs and optimisers, and the frozen embedder, for one process (see module docstring)."""

    def __init__(self, gan_cfg: GanConfig, enc_cfg: EncoderConfig, cfg: CaeTrainConfig, embedder: "Embedder",
                 device: torch.device, recognisers: "Sequence[Embedder]" = ()) -> None:
        self.gan_cfg, self.enc_cfg, self.cfg, self.device = gan_cfg, enc_cfg, cfg, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.G = build_generator(gan_cfg).train().to(self.device)
            self.E = NuisanceEncoder(enc_cfg).train().to(self.device)
            self.D = build_discriminator(gan_cfg).train().to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.E_ema = copy.deepcopy(self.E).eval().requires_grad_(False)
        self.embedder = embedder.to(self.device).eval().requires_grad_(False)
        self.recognisers = [r.to(self.device).eval().requires_grad_(False) for r in recognisers]
        self.opt_GE = torch.optim.Adam(list(self.G.parameters()) + list(self.E.parameters()), lr=cfg.lr,
                                       betas=cfg.betas, eps=1e-8)
        ratio = cfg.r1_interval / (cfg.r1_interval + 1)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d * ratio,
                                      betas=(0.0, 0.99 ** ratio), eps=1e-8)
        self.ema_beta = 0.5 ** (cfg.batch / (cfg.ema_kimg * 1000.0))  # EMA decay per step (half-life ema_kimg)
        self._last_fakes: tuple[Tensor, Tensor] | None = None  # the G step's renders, for the D step

    # ------------------------------------------------------------------ the step
    def step(self, x: Tensor, c: Tensor, step: int, cur_nimg: int) -> Stats:
        """One optimisation round on a pair-ordered batch ``x`` (B, 1, R, R) in [-1, 1] with conditions ``c``."""
        adv = self.cfg.adv_scale(cur_nimg / 1000.0)
        feat = self.cfg.feat_scale(cur_nimg / 1000.0)
        ens = self.cfg.ensemble_scale(cur_nimg / 1000.0) if self.recognisers else 0.0
        stats = self._generator_step(x, c, adv, feat, ens)
        if adv > 0:
            stats.update(self._discriminator_step(x, c, step))
        update_ema(self.G_ema, self.G, self.ema_beta)
        update_ema(self.E_ema, self.E, self.ema_beta)
        stats["adv_scale"] = torch.tensor(adv)
        return stats

    def _generator_step(self, x: Tensor, c: Tensor, adv: float, feat: float, ens: float) -> Stats:
        cfg, B = self.cfg, x.shape[0]
        dev = self.device
        mu, logvar = self.E(x)
        n = sample_n(mu, logvar)
        c_noisy = noisy_condition(c, cfg.c_noise)
        use_partner = (torch.rand(B, device=dev) < cfg.cross_prob)[:, None]
        c_rec = torch.where(use_partner, c_noisy[partner_rows(B).to(dev)], c_noisy)
        x_rec = self.G(n, c_rec)
        l1 = (x_rec - x).abs().mean()
        ssim_l = ms_ssim_loss(x_rec, x) if cfg.ssim_weight > 0 else x.new_zeros(())
        kl = kl_to_prior(mu, logvar)
        loss = cfg.l1_weight * l1 + cfg.ssim_weight * ssim_l + cfg.kl_weight * kl
        stats: Stats = {"loss/l1": l1.detach(), "loss/ssim": ssim_l.detach(), "loss/kl": kl.detach()}
        if feat > 0:
            feat_l = feature_loss(self.embedder, x_rec, x)
            loss = loss + feat * feat_l
            stats["loss/feat"] = feat_l.detach()
        fakes, fake_c = [x_rec], [c_rec]
        k = cfg.n_swap
        if k > 0:
            other = other_patient_rows(B)[:k].to(dev)
            c_swap = c[other]
            x_swap = self.G(n[:k], noisy_condition(c_swap, cfg.c_noise))
            id_l = identity_loss(self.embedder, x_swap, c_swap)
            loss = loss + cfg.id_weight * id_l
            stats["loss/id"] = id_l.detach()
            if ens > 0:
                ens_l = ensemble_identity_loss(self.recognisers, x_swap, x[other])
                loss = loss + ens * ens_l
                stats["loss/id_ensemble"] = ens_l.detach()
            if cfg.n_cycle_weight > 0:
                mu_swap, _ = self.E(x_swap)
                ncyc = (mu_swap - mu[:k].detach()).square().mean()
                loss = loss + cfg.n_cycle_weight * ncyc
                stats["loss/ncycle"] = ncyc.detach()
            fakes.append(x_swap)
            fake_c.append(c_swap)
        if adv > 0:
            with frozen(self.D):
                logits = self.D(torch.cat(fakes), torch.cat(fake_c))
            g_adv = F.softplus(-logits).mean()
            loss = loss + adv * g_adv
            stats["loss/G_adv"] = g_adv.detach()
        self.opt_GE.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_GE.step()
        stats["loss/total"] = loss.detach()
        self._last_fakes = (torch.cat(fakes).detach(), torch.cat(fake_c).detach())
        return stats

    def _discriminator_step(self, x: Tensor, c: Tensor, step: int) -> Stats:
        cfg = self.cfg
        assert self._last_fakes is not None, "the discriminator step follows a generator step"
        fakes, fake_c = self._last_fakes
        real_logits = self.D(x, c)
        fake_logits = self.D(fakes, fake_c)
        d_loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        stats: Stats = {"loss/D": d_loss.detach(), "D/real": real_logits.detach().mean(),
                        "D/fake": fake_logits.detach().mean()}
        if cfg.r1_gamma > 0 and step % cfg.r1_interval == 0:
            xr = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.D(xr, c).sum(), xr, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            d_loss = d_loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
            stats["loss/r1"] = r1.detach()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_D.step()
        return stats

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the counters (tensors alias the live ones: save at once)."""
        return {name: getattr(self, name).state_dict() for name in ("G", "E", "D", "G_ema", "E_ema", "opt_GE", "opt_D")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        from reid_core.train.optim import match_state_layout

        for name in ("G", "E", "D", "G_ema", "E_ema"):
            getattr(self, name).load_state_dict(state[name])
        for name in ("opt_GE", "opt_D"):
            opt = getattr(self, name)
            opt.load_state_dict(state[name])
            match_state_layout(opt)
