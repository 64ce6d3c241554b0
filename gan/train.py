"""GAN training loop: :func:`train_gan` turns a workspace + :class:`GanTrainConfig` into ``gan/``.

Writes (rank 0 only) into ``workspace.gan_dir``::

    train_config.json            the resolved options and architecture, at the start of every session
    G_ema.safetensors            + config.json: the EMA generator (GanConfig, GanTrainConfig, c_dim, stats)
    samples.png                  a snapshot grid (fixed latents and real conditions; see gan.snapshot)
    train_log.jsonl              one line per tick: losses, R1, ADA p and r_t, kimg, kimg/s, s/kimg
    resume/                      state.safetensors + state.json (see gan.resume)

``G_ema``, ``samples.png`` and the resume state are written together every
``snapshot_kimg``, at the end, at ``stop_after_kimg`` and on SIGINT/SIGTERM
(which then raises KeyboardInterrupt; a second SIGINT aborts at once) — the shared session and step loop
(:mod:`gan.runloop` over :mod:`reid_core.train.session`) fire these.
``metrics.json`` belongs to the GAN metrics; a fresh start deletes a stale one.

Determinism: each step reseeds the global torch RNG from ``(seed, step, rank)``
and reads the batch :class:`~gan.data.RealSampler` assigns to ``(seed, step)``;
so training N steps straight equals (bit for bit on CPU, one process) training
k steps, stopping, resuming and training N − k more.

Under ``torchrun`` (gloo on CPU, NCCL on GPU) every process trains on its slice
of the global batch and gradients are averaged by hand (:mod:`gan.sync`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gan.config import GanConfig
from gan.data import GanData, RealSampler, RealStream, load_gan_data, to_model_images
from gan.engine import GanEngine, Stats
from gan.runloop import KimgTrainer
from gan.resume import GanProgress, gan_resume
from gan.snapshot import SAMPLES_NAME, SnapshotGrid, save_generator, save_png_atomic
from gan.train_config import GanTrainConfig
from reid_core import artefact_names as names
from reid_core.device import resolve_device, synchronize
from reid_core.errors import TrainingError
from reid_core.train.distributed import DistContext
from reid_core.train.runlog import JsonlLog
from reid_core.train.session import check_stop_after, run_in_job
from reid_core.train.window import derive_seed
from reid_core.workspace import Workspace

_SEED_STEP = 0x6A5
AMP_CONV_CLAMP = 256.0
OUTPUT_FILES = (*names.GENERATOR_FILES, SAMPLES_NAME, names.RUN_METRICS, names.RUN_CONFIG,
                *names.ENCODER_FILES)  # the last two: an autoencoder run's encoder, replaced too


@dataclass
class GanTrainResult:
    """What a :func:`train_gan` call did; ``engine`` holds the live networks (None if nothing ran)."""

    gan_dir: Path
    steps: int
    kimg: float
    total_kimg: float
    finished: bool
    resumed_from: int | None
    elapsed_s: float
    s_per_kimg: float
    augment_p: float
    engine: GanEngine | None = field(default=None, repr=False)


def resolve_gan_config(cfg: GanTrainConfig, c_dim: int, amp: bool) -> GanConfig:
    """The preset at ``cfg.resolution`` with ``c_dim`` and ``cfg.arch``; ``conv_clamp`` 256 under amp unless set."""
    arch = cfg.arch.changes()
    if amp and "conv_clamp" not in arch:
        arch["conv_clamp"] = AMP_CONV_CLAMP
    try:
        return GanConfig.preset(cfg.preset, c_dim=c_dim, resolution=cfg.resolution, **arch)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"cannot build the GAN architecture: {exc}") from None


class _Session(KimgTrainer):
    """One training session on one process; built by :func:`train_gan`."""

    desc = "train-gan"
    outputs = OUTPUT_FILES

    def __init__(self, ws: Workspace, cfg: GanTrainConfig, ctx: DistContext, resume: bool, progress_bar: bool) -> None:
        self.ws, self.cfg, self.ctx, self.out, self.device = ws, cfg, ctx, ws.gan_dir, ctx.device
        if cfg.batch % ctx.world_size:
            raise TrainingError(f"batch {cfg.batch} must be divisible by the {ctx.world_size} processes")
        self.data: GanData = load_gan_data(ws, cfg.resolution, unconditional=cfg.unconditional, splits=cfg.splits)
        self.resume = gan_resume(self.out)
        self.state = self.resume.read(resume, cfg.to_dict())
        amp = cfg.amp and ctx.device.type == "cuda"
        if self.state is not None:
            self.gan_cfg = GanConfig.from_dict(self.state["gan"])  # the run's architecture, whatever the device
            if self.gan_cfg.c_dim != self.data.c_dim:
                raise TrainingError(f"the saved GAN has c_dim {self.gan_cfg.c_dim} but the embeddings now have "
                                    f"{self.data.c_dim} dimensions; start over with --no-resume")
        else:
            self.gan_cfg = resolve_gan_config(cfg, self.data.c_dim, amp)
        self.engine = GanEngine(self.gan_cfg, cfg, ctx.device)
        self.progress = GanProgress()
        self.sampler = RealSampler(len(self.data), cfg.batch, cfg.seed, ctx.rank, ctx.world_size)
        self.c_pool = torch.from_numpy(self.data.conditions).to(ctx.device)
        self.log_file = JsonlLog(self.out / names.TRAIN_LOG, enabled=ctx.is_main)
        self.show_bar = progress_bar and ctx.is_main
        self.grid = (SnapshotGrid.build(self.data, self.gan_cfg, cfg.grid_rows, cfg.grid_cols, cfg.seed, ctx.device)
                     if ctx.is_main else None)

    # ---------------------------------------------------------------- the session's hooks
    def load_state(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state["engine"])
        self.progress = GanProgress.from_dict(state["progress"])

    def run_config(self) -> dict[str, Any]:
        return {"train": self.cfg.to_dict(), "gan": self.gan_cfg.to_dict(), "c_dim": self.gan_cfg.c_dim,
                "world_size": self.ctx.world_size, "n_images": len(self.data), "store": self.data.store_path.name}

    # ---------------------------------------------------------------- one step
    def train_step(self, images: torch.Tensor, positions: torch.Tensor) -> Stats:
        dev, p = self.ctx.device, self.progress
        torch.manual_seed(derive_seed(self.cfg.seed, _SEED_STEP, p.step, self.ctx.rank))
        reals = to_model_images(images, dev, self.gan_cfg.resolution, self.engine.channels_last)
        real_c = self.c_pool[positions.to(dev)]
        stats = self.engine.step(reals, real_c, self.c_pool, p.step, p.cur_nimg)
        p.step += 1
        p.cur_nimg += self.cfg.batch
        return stats

    # ---------------------------------------------------------------- outputs
    def stats_summary(self) -> dict[str, Any]:
        p = self.progress
        return {"step": p.step, "kimg": p.kimg, "total_kimg": self.cfg.kimg, "augment_p": self.engine.augment_p,
                "ada_rt": self.engine.ada_rt, "r1_gamma": self.engine.r1_gamma, "elapsed_s": round(p.elapsed_s, 3),
                "s_per_kimg": self.s_per_kimg(), "world_size": self.ctx.world_size, "device": str(self.ctx.device),
                "n_images": len(self.data), "store_size": self.data.store_size}

    def s_per_kimg(self) -> float:
        p = self.progress
        return round(p.train_time_s / p.kimg, 4) if p.cur_nimg else 0.0

    def snapshot(self) -> None:
        """G_ema + config.json, samples.png and the resume state (rank 0 writes; every rank calls)."""
        if not self.ctx.is_main:
            return
        t0 = time.perf_counter()
        engine_state = self.engine.state_dict()
        self.resume.save({"engine": engine_state, "progress": self.progress.to_dict(), "config": self.cfg.to_dict(),
                          "gan": self.gan_cfg.to_dict(), "world_size": self.ctx.world_size})
        save_generator(self.out, self.engine.G_ema, self.gan_cfg, self.cfg.to_dict(), self.stats_summary())
        assert self.grid is not None
        save_png_atomic(self.out / SAMPLES_NAME, self.grid.render(self.engine.G_ema))
        self.log_file.write({"event": "snapshot", "step": self.progress.step, "kimg": self.progress.kimg,
                             "snapshot_s": round(time.perf_counter() - t0, 3)})

    # ---------------------------------------------------------------- the loop's hooks
    def batches(self) -> RealStream:
        return RealStream(self.data, self.sampler, self.progress.step, self.cfg.num_workers,
                          pin_memory=self.device.type == "cuda")

    def save(self) -> None:
        self.snapshot()

    def log(self, stats: dict[str, float]) -> dict[str, str]:
        e = self.engine
        record = self.tick_record(stats, p=e.augment_p, rt=e.ada_rt)
        self.log_file.write(record)
        return {"G": f"{record.get('loss/G', math.nan):.3f}", "D": f"{record.get('loss/D', math.nan):.3f}",
                "p": f"{e.augment_p:.3f}", "s_kimg": f"{record['s_per_kimg']:.1f}"}


def train_gan(workspace: Workspace | str | Path, config: GanTrainConfig, resume: bool = True,
              progress: bool = True, stop_after_kimg: float | None = None) -> GanTrainResult:
    """Train the (identity-conditioned) GAN of ``workspace`` into ``workspace.gan_dir`` (see module docstring).

    ``resume``: continue from ``gan/resume/`` when it exists (a finished run
    returns at once unless ``kimg`` grew); False starts over, deleting the
    previous run's files. ``stop_after_kimg``: end this session after that many
    thousand images (state saved), for time-sliced jobs. Under ``torchrun``
    every rank calls this. Raises WorkspaceError when the data (or, for a
    conditional GAN, the embeddings) are missing, TrainingError on bad options.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    check_stop_after("stop_after_kimg", stop_after_kimg, "kimg")
    session, outcome = run_in_job(config.device, lambda ctx: _Session(ws, config, ctx, resume, progress),
                                  stop_after_kimg)
    p = session.progress
    return GanTrainResult(gan_dir=ws.gan_dir, steps=p.step, kimg=p.kimg, total_kimg=config.kimg,
                          finished=outcome.finished, resumed_from=outcome.resumed_from, elapsed_s=p.elapsed_s,
                          s_per_kimg=session.s_per_kimg(), augment_p=session.engine.augment_p,
                          engine=session.engine if outcome.ran else None)


def measure_s_per_kimg(preset: str, res: int, batch: int, steps: int, device: str = "auto", *, c_dim: int = 64,
                       warmup: int = 2, amp: bool = True, channels_last: bool = True, augment_p: float = 0.2,
                       seed: int = 0) -> float:
    """Seconds per thousand real images of :meth:`GanEngine.step` on synthetic data (no workspace).

    Runs ``warmup`` untimed steps, then times ``steps`` (R1 falls on steps that
    are multiples of 16: time a multiple of 16 for the amortised cost). The ADA
    pipe runs at probability ``augment_p`` (0: augmentation off).
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    dev = resolve_device(device)
    cfg = GanTrainConfig(preset=str(preset), res=res, batch=batch, seed=seed, amp=amp, channels_last=channels_last,
                         augment=augment_p > 0, device="cuda" if dev.type == "cuda" else "cpu")
    engine = GanEngine(resolve_gan_config(cfg, c_dim, amp and dev.type == "cuda"), cfg, dev)
    if engine.pipe is not None:
        engine.pipe.p = augment_p
    gen = torch.Generator().manual_seed(seed)
    reals = (torch.rand(batch, 1, res, res, generator=gen) * 2 - 1).to(dev)
    if engine.channels_last:
        reals = reals.contiguous(memory_format=torch.channels_last)
    c_pool = torch.randn(max(batch, 256), c_dim, generator=gen).to(dev)
    real_c = c_pool[:batch]

    def run(first: int, n: int) -> None:
        for step in range(first, first + n):
            engine.step(reals, real_c, c_pool, step, step * batch)
        synchronize(dev)

    run(0, warmup)
    t0 = time.perf_counter()
    run(warmup, steps)
    return (time.perf_counter() - t0) / (steps * batch / 1000.0)
