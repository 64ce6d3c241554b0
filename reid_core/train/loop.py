"""The embedder trainer: :func:`train_embedder` turns a workspace + :class:`TrainConfig` into ``embedder/``.

Its step and outputs run in the shared step loop (:mod:`reid_core.train.run_loop`):
a train line every ``log_every`` steps, validation (and with it the resume state)
every ``val_every`` steps and at the end.

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
from reid_core.train.distributed import DistContext, init_distributed
from reid_core.train.losses import build_objective
from reid_core.train.optim import build_optimizer, build_scheduler, match_state_layout
from reid_core.train.run_loop import LoopTrainer, Schedule, run_loop
from reid_core.train.runlog import JsonlLog, write_json_atomic
from reid_core.train.sampler import PatientBatchSampler
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


class _Trainer(LoopTrainer):
    """One training session; built by :func:`train_embedder`."""

    def __init__(self, workspace: Workspace, config: TrainConfig, ctx: DistContext, progress_bar: bool) -> None:
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
        self.log_file = JsonlLog(self.out / "train_log.jsonl", enabled=ctx.is_main)
        self.resume = embedder_resume(self.out)

    # ---------------------------------------------------------------- setup
    def restore_or_reset(self, resume: bool) -> int | None:
        """Load the resume state (returns its step) or clear the previous run's files (returns None)."""
        if resume and self.resume.exists():
            state = self.resume.load()
            self.resume.check_config(state["config"], self.cfg.to_dict())
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            match_state_layout(self.optimizer)
            self.scheduler.load_state_dict(state["scheduler"])
            objective_states = state["objective"]
            if state["world_size"] != self.ctx.world_size:
                log.warning("resuming a %d-process run on %d processes: batch order differs from an "
                            "uninterrupted run", state["world_size"], self.ctx.world_size)
            elif objective_states and objective_states[self.ctx.rank] is not None:
                self.objective.load_state(objective_states[self.ctx.rank])
            self.progress = Progress.from_dict(state["progress"])
            if self.ctx.is_main:
                log.info("resuming from step %d (epoch %d) in %s", self.progress.step, self.progress.epoch,
                         self.resume.folder)
            return self.progress.step
        if self.cfg.init_weights:
            load_init_weights(self.model, self.cfg.init_weights)  # before DDP wraps: rank 0's copy is broadcast
        if self.ctx.is_main:
            self.resume.start_over(self.out, (*names.EMBEDDER_FILES, names.RUN_METRICS))
        self.ctx.barrier()
        return None

    def wrap_ddp(self) -> None:
        if self.ctx.distributed:
            ids = [self.ctx.device] if self.ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

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
        write_json_atomic(self.out / "metrics.json", self.summary())

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

    def run(self, stop_after_steps: int | None) -> str:
        """Train until the budget, early stop, ``stop_after_steps`` or a signal; returns why it ended."""
        cfg = self.cfg
        schedule = Schedule("step", self.total_steps, cfg.log_every, save_every=cfg.val_every,
                            evaluate_every=cfg.val_every, stop_after=stop_after_steps)
        outcome = run_loop(self, schedule, desc="train", show_bar=self.show_bar, agree=self.ctx.any_flag)
        return "early_stop" if self.progress.stopped_early else outcome


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
    if stop_after_steps is not None and stop_after_steps < 1:
        raise ValueError(f"stop_after_steps must be None or >= 1, got {stop_after_steps}")
    ctx = init_distributed(config.device)
    try:
        trainer = _Trainer(ws, config, ctx, progress)
        if ctx.is_main:
            ws.embedder_dir.mkdir(parents=True, exist_ok=True)
        resumed_from = trainer.restore_or_reset(resume)
        already_done = resumed_from is not None and trainer.finished()
        if already_done:
            if ctx.is_main:
                log.info("%s already holds a finished run (step %d); pass resume=False / --no-resume to retrain",
                         ws.embedder_dir, trainer.progress.step)
            reason = "early_stop" if trainer.progress.stopped_early else "finished"
        else:
            if ctx.is_main:
                write_json_atomic(ws.embedder_dir / "train_config.json", trainer.cfg.to_dict())
            trainer.log_file.start(resumed_from)
            trainer.wrap_ddp()
            reason = trainer.run(stop_after_steps)
            ctx.broadcast_buffers(trainer.model)  # BatchNorm statistics of the last step differ per rank
            trainer.net = trainer.model  # drop DDP (and its process-group reference) before the group goes
        p = trainer.progress
        return TrainResult(
            embedder_dir=ws.embedder_dir, best_metrics=dict(p.best_metrics), best_step=p.best_step, steps=p.step,
            total_steps=int(trainer.total_steps), epoch=p.epoch, stopped_early=p.stopped_early,
            finished=reason != "stopped", resumed_from=resumed_from, elapsed_s=p.elapsed_s,
            images_per_sec=trainer.images_per_sec(), val_source=trainer.data.val_source,
            model=None if already_done else trainer.model)
    finally:
        ctx.close()
