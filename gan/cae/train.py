"""Training loop of the conditional autoencoder: :func:`train_cae` turns a workspace into ``gan/``.

Writes into ``workspace.gan_dir``::

    train_config.json            the resolved options and architectures, at the start of every session
    G_ema.safetensors            + config.json, E_ema.safetensors + encoder.json (see gan.cae.io)
    samples.png                  per row: real film | reconstruction | two identity swaps | a prior sample
    train_log.jsonl              one line per tick: losses, kimg, s/kimg
    resume/                      state.safetensors + state.json (state_prev.*: the previous generation)

Checkpoints, samples and the resume state are written together every
``snapshot_kimg``, at the end, at ``stop_after_kimg`` and on SIGINT/SIGTERM
(which then raise KeyboardInterrupt) — the shared session and step loop
(:mod:`gan.runloop` over :mod:`reid_core.train.session`) fire these. Each step reseeds the global torch RNG
from ``(seed, step)`` and reads the batch :class:`~gan.cae.data.PairSampler`
assigns to ``(seed, step)``, so training N steps straight equals training k
steps, resuming and training N − k more (bit for bit on CPU).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan.cae.config import RESUMABLE_CHANGES, CaeTrainConfig
from gan.cae.data import PairData, PairSampler, load_pair_data
from gan.cae.encoder import EncoderConfig
from gan.cae.engine import CaeEngine
from gan.cae.io import save_cae
from gan.data import RealStream, to_model_images
from gan.resume import GanProgress
from gan.runloop import KimgTrainer
from gan.snapshot import SAMPLES_NAME, save_png_atomic, tile_grid
from reid_core import artefact_names as names
from reid_core.checkpoint import weights_sha256
from reid_core.device import training_device
from reid_core.errors import CheckpointError, WorkspaceError
from reid_core.train.distributed import DistContext
from reid_core.train.runlog import JsonlLog
from reid_core.train.session import check_stop_after, run_session
from reid_core.train.state import ResumeFolder
from reid_core.train.window import derive_seed
from reid_core.workspace import Workspace

_SEED_STEP = 0xCAE3
OUTPUT_FILES = (*names.GENERATOR_FILES, *names.ENCODER_FILES, SAMPLES_NAME, names.RUN_METRICS, names.RUN_CONFIG,
                names.TRAIN_LOG)


@dataclass
class CaeTrainResult:
    """What a :func:`train_cae` call did."""

    gan_dir: Path
    steps: int
    kimg: float
    finished: bool
    resumed_from: int | None
    elapsed_s: float
    s_per_kimg: float


def _load_embedder(ws: Workspace, directory: Path | None = None):  # noqa: ANN202 - Embedder, imported lazily
    """The workspace's embedder (the condition), or the recogniser in ``directory`` (``id_ensemble``)."""
    from reid_core.checkpoint import load_embedder

    what = "the workspace's embedder" if directory is None else f"the recogniser {directory}"
    try:
        return load_embedder(directory or ws.embedder_dir)
    except CheckpointError as exc:
        raise WorkspaceError(f"the autoencoder's identity cycle needs {what}: {exc}") from None


class _Session(KimgTrainer):
    """One training session (one process); built by :func:`train_cae`."""

    desc = "train-cae"
    outputs = OUTPUT_FILES

    def __init__(self, ws: Workspace, cfg: CaeTrainConfig, resume: bool, progress_bar: bool) -> None:
        self.ws, self.cfg, self.out = ws, cfg, ws.gan_dir
        self.ctx = DistContext.single(training_device(cfg.device))
        self.device = self.ctx.device
        self.pairs: PairData = load_pair_data(ws, cfg.res, cfg.splits)
        data = self.pairs.data
        self.resume = ResumeFolder(self.out / "resume", "autoencoder", CaeTrainConfig, RESUMABLE_CHANGES)
        # a scheduled loss term that has not started by the saved kimg may be added or changed
        self.state = self.resume.read(resume, cfg.to_dict(), also_resumable=lambda saved, state:
                                      cfg.unstarted_changes(saved, GanProgress.from_dict(state["progress"]).kimg))
        self.gan_cfg = cfg.arch.gan_config(data.resolution, data.c_dim)
        self.enc_cfg = EncoderConfig(resolution=data.resolution, n_dim=cfg.arch.n_dim,
                                     channel_base=cfg.arch.e_channel_base, channel_max=cfg.arch.e_channel_max)
        self.engine = CaeEngine(self.gan_cfg, self.enc_cfg, cfg, _load_embedder(ws), self.device,
                                [_load_embedder(ws, Path(p)) for p in cfg.id_ensemble])
        self.progress = GanProgress()
        self.sampler = PairSampler(self.pairs.groups, cfg.batch, cfg.seed)
        self.c_pool = torch.from_numpy(data.conditions).to(self.device)
        self.log_file = JsonlLog(self.out / names.TRAIN_LOG)
        self.show_bar = progress_bar
        self.grid = self._grid_inputs()

    # ---------------------------------------------------------------- the session's hooks
    def load_state(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state["engine"])
        self.progress = GanProgress.from_dict(state["progress"])

    def run_config(self) -> dict[str, Any]:
        return {"objective": "autoencoder", "train": self.cfg.to_dict(), "gan": self.gan_cfg.to_dict(),
                "encoder": self.enc_cfg.to_dict(), "n_images": len(self.pairs.data),
                "id_ensemble_sha256": [weights_sha256(p) for p in self.cfg.id_ensemble],
                "n_patients": len(self.pairs.groups), "store": self.pairs.data.store_path.name}

    def save(self) -> None:
        """Checkpoints, samples.png and the resume state."""
        t0 = time.perf_counter()
        p = self.progress
        self.resume.save({"engine": self.engine.state_dict(), "config": self.cfg.to_dict(), "progress": p.to_dict()})
        save_cae(self.out, self.engine.G_ema, self.engine.E_ema, self.gan_cfg, self.enc_cfg, self.cfg.to_dict(),
                 self.stats_summary())
        save_png_atomic(self.out / SAMPLES_NAME, self.render_grid())
        self.log_file.write({"event": "snapshot", "step": p.step, "kimg": p.kimg,
                             "snapshot_s": round(time.perf_counter() - t0, 3)})

    def stats_summary(self) -> dict[str, Any]:
        p = self.progress
        return {"objective": "autoencoder", "step": p.step, "kimg": p.kimg, "total_kimg": self.cfg.kimg,
                "elapsed_s": round(p.elapsed_s, 3), "train_time_s": round(p.train_time_s, 3),
                "s_per_kimg": round(p.train_time_s / p.kimg, 4) if p.cur_nimg else 0.0,
                "device": str(self.device), "threads": torch.get_num_threads(),
                "n_images": len(self.pairs.data), "n_patients": len(self.pairs.groups)}

    # ---------------------------------------------------------------- samples
    def _grid_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, 0x5A4])
        groups = self.pairs.groups
        picks = [groups[i][0] for i in rng.choice(len(groups), min(self.cfg.grid_rows, len(groups)), replace=False)]
        data = self.pairs.data
        store = np.load(data.store_path, mmap_mode="r")
        images = torch.from_numpy(np.asarray(store[data.rows[np.asarray(picks)]]))
        reals = to_model_images(images, self.device, data.resolution, channels_last=False)
        return reals, self.c_pool[torch.as_tensor(picks, device=self.device)]

    @torch.no_grad()
    def render_grid(self) -> np.ndarray:
        """uint8 grid: per row real | reconstruction | swap to the next two rows' identities | prior sample."""
        reals, c = self.grid
        G, E = self.engine.G_ema, self.engine.E_ema
        mu, _ = E(reals)
        k = len(reals)
        nxt, nxt2 = torch.roll(torch.arange(k), -1), torch.roll(torch.arange(k), -2)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        prior = torch.randn(k, mu.shape[1], generator=gen).to(self.device)
        cols = [reals, G(mu, c, noise_mode="const"), G(mu, c[nxt], noise_mode="const"),
                G(mu, c[nxt2], noise_mode="const"), G(prior, c, noise_mode="const")]
        return tile_grid(torch.stack(cols, dim=1))

    # ---------------------------------------------------------------- the loop's hooks
    def train_step(self, images: torch.Tensor, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        p, cfg = self.progress, self.cfg
        torch.manual_seed(derive_seed(cfg.seed, _SEED_STEP, p.step, 0))
        x = to_model_images(images, self.device, self.pairs.data.resolution, channels_last=False)
        stats = self.engine.step(x, self.c_pool[positions.to(self.device)], p.step, p.cur_nimg)
        p.step += 1
        p.cur_nimg += cfg.batch
        return stats

    def batches(self) -> RealStream:
        return RealStream(self.pairs.data, self.sampler, self.progress.step)

    def log(self, stats: dict[str, float]) -> dict[str, str]:
        record = self.tick_record(stats)
        self.log_file.write(record)
        return {"l1": f"{record.get('loss/l1', math.nan):.3f}", "id": f"{record.get('loss/id', math.nan):.3f}",
                "s_kimg": f"{record['s_per_kimg']:.1f}"}


def train_cae(workspace: Workspace | str | Path, config: CaeTrainConfig, resume: bool = True,
              progress: bool = True, stop_after_kimg: float | None = None) -> CaeTrainResult:
    """Train the conditional autoencoder of ``workspace`` into ``workspace.gan_dir`` (see module docstring).

    ``resume``: continue from ``gan/resume/`` when it holds an autoencoder run;
    False starts over, deleting the previous run's files. ``stop_after_kimg``:
    end this session after that many thousand images (state saved). Needs the
    workspace's prepared images, ``embeddings.npz`` and the embedder that made
    them (WorkspaceError otherwise); TrainingError on bad options.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    check_stop_after("stop_after_kimg", stop_after_kimg, "kimg")
    session = _Session(ws, config, resume, progress)
    outcome = run_session(session, stop_after_kimg)
    p = session.progress
    s_per_kimg = float(session.stats_summary()["s_per_kimg"]) if outcome.ran else 0.0
    return CaeTrainResult(ws.gan_dir, p.step, p.kimg, outcome.finished, outcome.resumed_from, p.elapsed_s, s_per_kimg)
