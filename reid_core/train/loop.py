"""The embedder trainer: :func:`train_embedder` turns a workspace + :class:`TrainConfig` into ``embedder/``.

Its step and outputs run in the shared session (:mod:`reid_core.train.session`: restore or
reset, run config, log) and step loop (:mod:`reid_core.train.run_loop`): a train line every
``log_every`` steps, validation (and with it the resume state) every ``val_every`` steps and at the end.

Writes (rank 0 only)::

    embedder/train_config.json   the resolved config, at the start of every run
    embedder/model.safetensors   + config.json: the best model by val mAP@R (TrainConfig and metrics inside)
    embedder/metrics.json        best val metrics, steps, time, images/s
    embedder/train_log.jsonl     one line per log step and per validation
    embedder/resume/             state.safetensors + state.json (see reid_core.train.state)

Determinism: batches depend on (seed, epoch) only, and every step reseeds the
global torch RNG (dropout, drop-path) and the augmentation generator from
(seed, step, micro-step, rank). Training N steps straight therefore equals
(bit for bit on CPU, one process) training k steps, stopping, and resuming.

Interruption: SIGINT/SIGTERM finish the current step, log, save the resume state
and raise KeyboardInterrupt (a second SIGINT aborts at once); ``stop_after_steps``
ends a session the same way but returns normally.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from reid_core import artefact_names as names
from reid_core.checkpoint import save_embedder
from reid_core.device import autocast_context
from reid_core.errors import TrainingError
from reid_core.model import Embedder, load_init_weights
from reid_core.train.augment import augment_batch
from reid_core.train.config import TrainConfig
from reid_core.train.data import BatchDataset, TrainingData, iterate_batches, load_training_data, to_device_float
from reid_core.train.distributed import DistContext
from reid_core.train.losses import build_objective
from reid_core.train.optim import build_optimizer, build_scheduler, match_state_layout
from reid_core.train.run_loop import Schedule
from reid_core.train.runlog import JsonlLog, write_json_atomic
from reid_core.train.sampler import PatientBatchSampler
from reid_core.train.session import SessionTrainer, check_stop_after, run_in_job
from reid_core.train.state import Progress, embedder_resume
from reid_core.train.validate import validate
from reid_core.train.window import derive_seed
from reid_core.workspace import Workspace

log = logging.getLogger(__name__)

_SEED_DROPOUT, _SEED_AUGMENT = 1, 2


@dataclass
class TrainResult:
    """What a :func:`train_embedder` call did. ``model``: the live (last-step) weights, None if nothing ran."""

    embedder_dir: Path
    best_metrics: dict[str, float]
    best_step: int
    steps: int
    total_steps: int
    epoch: int
    stopped_early: bool
    finished: bool
    resumed_from: int | None
    elapsed_s: float
    images_per_sec: float
    val_source: str
    model: Embedder | None = field(default=None, repr=False)


class _Trainer(SessionTrainer):
    """One training session; built by :func:`train_embedder`."""

    desc = "train"
    outputs = (*names.EMBEDDER_FILES, names.RUN_METRICS)

    def __init__(self, workspace: Workspace, config: TrainConfig, ctx: DistContext, resume: bool,
                 progress_bar: bool) -> None:
        self.ws, self.ctx, self.show_bar = workspace, ctx, progress_bar and ctx.is_main
        self.device = ctx.device
        self.out = workspace.embedder_dir
        self.data: TrainingData = load_training_data(workspace, config.image_size, config.seed,
                                                     config.val_max_patients,
                                                     normal_only=config.train_findings == "normal")
        size = self.data.image_size
        self.cfg = dataclasses.replace(config, image_size=size, model=dataclasses.replace(config.model,
                                                                                        image_size=size))
        cfg, dev = self.cfg, ctx.device
        self.sampler = PatientBatchSampler(self.data.train_labels, cfg.m_per_patient, cfg.batch_size, cfg.seed,
                                           ctx.rank, ctx.world_size)
        self.steps_per_epoch = len(self.sampler) // cfg.grad_accum
        if self.steps_per_epoch == 0:
            raise TrainingError(
                f"the train split ({self.sampler.n_patients} patients with 2+ images) yields {len(self.sampler)} "
                f"batch(es) of {self.sampler.batch_size} images per process per epoch, fewer than grad_accum="
                f"{cfg.grad_accum} × {ctx.world_size} process(es) need for one step; lower batch_size or grad_accum")
        self.total_steps = int(min(cfg.max_steps or math.inf, cfg.epochs * self.steps_per_epoch))
        self.images_per_step = self.sampler.batch_size * cfg.grad_accum * ctx.world_size
        self.lr = cfg.lr
        self.amp = cfg.amp and dev.type == "cuda"
        torch.manual_seed(cfg.seed)
        try:
            self.model = Embedder(cfg.model)
        except ValueError as exc:  # e.g. an unknown timm backbone name
            raise TrainingError(f"cannot build the model: {exc}") from None
        self.model.to(dev)
        if cfg.channels_last:
            self.model.to_channels_last()
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.objective = build_objective(cfg, int(self.data.train_labels.max()) + 1).to(dev)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, self.objective.parameters(),
                                         self.objective.lr_mult)
        self.scheduler = build_scheduler(self.optimizer, cfg.warmup_steps, self.total_steps, cfg.min_lr_ratio)
        self.progress = Progress()
        self.net: torch.nn.Module = self.model
        self.aug_gen = torch.Generator(device=dev)
        self.log_file = JsonlLog(self.out / names.TRAIN_LOG, enabled=ctx.is_main)
        self.resume = embedder_resume(self.out)
        self.state = self.resume.read(resume, self.cfg.to_dict())

    # ---------------------------------------------------------------- the session's hooks
    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        match_state_layout(self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        memories = state["objective"]  # each rank's loss memory: it continues only on as many processes
        if state["world_size"] == self.ctx.world_size and memories and memories[self.ctx.rank] is not None:
            self.objective.load_state(memories[self.ctx.rank])
        self.progress = Progress.from_dict(state["progress"])

    def reset(self) -> None:
        if self.cfg.init_weights:
            load_init_weights(self.model, self.cfg.init_weights)  # before DDP wraps: rank 0's copy is broadcast

    def run_config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def schedule(self, stop_after: float | None) -> Schedule:
        cfg = self.cfg
        return Schedule("step", self.total_steps, cfg.log_every, save_every=cfg.val_every,
                        evaluate_every=cfg.val_every, stop_after=stop_after)

    def where(self) -> str:
        return f"step {self.progress.step} (epoch {self.progress.epoch})"

    def before_loop(self) -> None:
        if self.ctx.distributed:
            ids = [self.ctx.device] if self.ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def after_loop(self) -> None:
        self.ctx.broadcast_buffers(self.model)  # BatchNorm statistics of the last step differ per rank
        self.net = self.model  # drop DDP (and its process-group reference) before the group goes

    # ---------------------------------------------------------------- one step
    def train_step(self, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        cfg, dev, step, rank = self.cfg, self.ctx.device, self.progress.step, self.ctx.rank
        torch.manual_seed(derive_seed(cfg.seed, _SEED_DROPOUT, step, rank))
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=dev)
        for k, (images, labels) in enumerate(micro):
            x = to_device_float(images, dev, self.data.image_size, channels_last=False)
            self.aug_gen.manual_seed(derive_seed(cfg.seed, _SEED_AUGMENT, step, k, rank))
            x = augment_batch(x, cfg.augment, self.aug_gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last = k == len(micro) - 1
            sync = self.net.no_sync() if (self.ctx.distributed and not last) else contextlib.nullcontext()
            with sync:
                with autocast_context(dev, self.amp):
                    emb = self.net(x)
                loss = self.objective(emb, labels.to(dev, non_blocking=True)) / len(micro)
                loss.backward()
            total += loss.detach()
        self.ctx.average_gradients(self.objective.parameters())  # proxies live outside DDP's model
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return total

    # ---------------------------------------------------------------- validation and saving
    def validate_and_track(self) -> bool:
        """Validate on rank 0, save the best model, log; returns (on every rank) whether to stop early."""
        p, cfg = self.progress, self.cfg
        stop = False
        if self.ctx.is_main:
            t0 = time.perf_counter()
            metrics = validate(self.model, self.data.store_path, self.data.val_rows, self.data.val_labels,
                               size=self.data.image_size, device=self.ctx.device, batch_size=2 * cfg.batch_size,
                               amp=self.amp, channels_last=cfg.channels_last)
            score = metrics["map_at_r"] if math.isfinite(metrics["map_at_r"]) else -math.inf
            improved = score > p.best_metric or p.best_step < 0
            if improved:
                p.best_metric, p.best_step, p.best_metrics, p.bad_validations = score, p.step, metrics, 0
                save_embedder(self.out, self.model, extra_meta={
                    "train_config": cfg.to_dict(), "val_metrics": metrics, "step": p.step, "epoch": p.epoch,
                    "val_source": self.data.val_source})
            else:
                p.bad_validations += 1
            patience = cfg.early_stop_patience
            stop = patience is not None and p.bad_validations >= patience
            self.log_file.write({"event": "val", "step": p.step, "epoch": p.epoch, "elapsed_s": round(p.elapsed_s, 2),
                                 **metrics,
                                 "best_map_at_r": p.best_metric, "improved": improved,
                                 "val_source": self.data.val_source, "val_s": round(time.perf_counter() - t0, 3)})
            if stop:
                log.info("early stop at step %d: no mAP@R gain in %d validations (best %.4f at step %d)",
                         p.step, p.bad_validations, p.best_metric, p.best_step)
        p.last_val_step = p.step
        stop = self.ctx.broadcast_flag(stop)
        p.stopped_early = stop
        return stop

    def save(self) -> None:
        """Resume state (every rank's loss memory gathered) and metrics.json; rank 0 writes."""
        objective_states = self.ctx.gather_objects(self.objective.state())
        if not self.ctx.is_main:
            return
        self.resume.save({"model": dict(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
                          "scheduler": self.scheduler.state_dict(), "objective": objective_states,
                          "progress": self.progress.to_dict(), "config": self.cfg.to_dict(),
                          "world_size": self.ctx.world_size})
        write_json_atomic(self.out / names.RUN_METRICS, self.summary())

    def summary(self) -> dict[str, Any]:
        p = self.progress
        return {"best": p.best_metrics, "best_step": p.best_step, "best_map_at_r": p.best_metric,
                "steps": p.step, "total_steps": self.total_steps, "epoch": p.epoch,
                "stopped_early": p.stopped_early, "elapsed_s": round(p.elapsed_s, 3),
                "images_seen": p.images_seen, "images_per_sec": self.images_per_sec(),
                "val_source": self.data.val_source, "n_train_images": int(len(self.data.train_rows)),
                "n_train_patients": self.data.n_train_patients, "n_val_images": int(len(self.data.val_rows)),
                "world_size": self.ctx.world_size, "device": str(self.ctx.device), "image_size": self.data.image_size}

    def images_per_sec(self) -> float:
        p = self.progress
        return round(p.images_seen / p.train_time_s, 2) if p.train_time_s > 0 else 0.0

    # ---------------------------------------------------------------- the loop's hooks
    def position(self) -> int:
        return self.progress.step

    def finished(self) -> bool:
        return self.progress.stopped_early or self.progress.step >= self.total_steps

    def batches(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """``grad_accum`` batches per step, epoch after epoch from the current position (a new epoch starts
        only when a step asks for it)."""
        p, a = self.progress, self.cfg.grad_accum
        while True:
            if p.step_in_epoch >= self.steps_per_epoch:
                p.epoch, p.step_in_epoch = p.epoch + 1, 0
            batches = self.sampler.epoch_batches(p.epoch)[p.step_in_epoch * a:self.steps_per_epoch * a]
            dataset = BatchDataset(self.data.store_path, self.data.train_rows, self.data.train_labels, batches)
            batch_iter = iterate_batches(dataset, self.cfg.num_workers, pin_memory=self.device.type == "cuda")
            try:
                while p.step_in_epoch < self.steps_per_epoch:
                    yield [next(batch_iter) for _ in range(a)]
            finally:
                batch_iter.close()

    def step(self, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        p = self.progress
        self.lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses (logged)
        loss = self.train_step(micro)
        p.step, p.step_in_epoch = p.step + 1, p.step_in_epoch + 1
        p.images_seen += self.images_per_step
        return {"loss": loss}

    def evaluate(self) -> None:
        self.validate_and_track()

    def log(self, stats: dict[str, float]) -> dict[str, str]:
        p = self.progress
        record = {"event": "train", "step": p.step, "epoch": p.epoch, "loss": stats.get("loss", math.nan),
                  "images_per_sec": stats["images_per_sec"], "data_wait_frac": stats["data_wait_frac"],
                  "lr": self.lr}
        self.log_file.write(record)
        return {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_sec']:.1f}"}


def train_embedder(workspace: Workspace | str | Path, config: TrainConfig, resume: bool = True,
                   progress: bool = True, stop_after_steps: int | None = None) -> TrainResult:
    """Train an identity embedder on ``workspace`` and write ``workspace.embedder_dir`` (see module docstring).

    ``resume``: continue from ``embedder/resume/`` when it exists (a finished run
    returns at once); False starts over, deleting the previous run's files.
    ``stop_after_steps``: end this session after that many steps (resume state
    saved), e.g. to fit a time slot. Under ``torchrun`` every rank calls this;
    rank 0 writes. Raises TrainingError (and WorkspaceError/ManifestError) with
    the reason when the data cannot be trained on.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    check_stop_after("stop_after_steps", stop_after_steps, "step")
    trainer, outcome = run_in_job(config.device, lambda ctx: _Trainer(ws, config, ctx, resume, progress),
                                  stop_after_steps)
    p = trainer.progress
    return TrainResult(
        embedder_dir=ws.embedder_dir, best_metrics=dict(p.best_metrics), best_step=p.best_step, steps=p.step,
        total_steps=int(trainer.total_steps), epoch=p.epoch, stopped_early=p.stopped_early,
        finished=outcome.finished, resumed_from=outcome.resumed_from, elapsed_s=p.elapsed_s,
        images_per_sec=trainer.images_per_sec(), val_source=trainer.data.val_source,
        model=trainer.model if outcome.ran else None)
