"""Process-group plumbing for ``torchrun``: who am I, which device, and the few collectives training needs.

Launched by ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in the
environment) the process group is initialised with NCCL on CUDA and gloo on
CPU; otherwise everything here degrades to single-process no-ops.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from reid_core.device import training_device

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """This process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # True when this module initialised the process group

    @classmethod
    def single(cls, device: torch.device) -> "DistContext":
        """One process on ``device`` (trainers that never run under torchrun)."""
        return cls(0, 1, 0, device)

    def __enter__(self) -> "DistContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(t, src=0)
        return bool(t.item())

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks (parameters DDP does not manage, e.g. loss proxies)."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.world_size

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (e.g. BatchNorm running statistics) on every rank."""
        if self.distributed:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)

    def close(self) -> None:
        """Destroy the process group if this module created it.

        gloo's worker threads destroy a finished work object (and drop the Python
        tensors it references, which needs the GIL) while holding the process
        group's queue lock, and the process group's destructor takes that lock
        while its caller holds the GIL: a deadlock when both meet (seen with
        torch 2.13). A barrier, then a short GIL-free sleep, lets the workers
        go idle before the destructor runs.
        """
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            time.sleep(0.2)
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """The DistContext of this process, initialising the process group when launched by torchrun
    (``with init_distributed(...) as ctx:`` closes it again)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = training_device(device, local_rank)
    if world_size <= 1:
        return DistContext.single(dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
        owns = True
        log.info("rank %d/%d: process group initialised (%s) on %s", rank, world_size, backend, dev)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)
