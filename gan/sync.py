"""Keeping GAN replicas identical across ``torchrun`` processes without DDP wrappers.

R1 and path length back-propagate through a gradient (``create_graph=True``);
DDP's reducer hooks and lazy, phase-wise optimisation fit that badly. Instead
every phase's gradients are all-reduced by hand, flattened into one buffer, after
its backward pass and before its optimiser step; the few statistics each rank
updates from its own data (``w_avg``, the path-length mean) are averaged after
the step. With identical initial weights (same seed, plus a broadcast from rank 0)
the replicas then stay bit-identical. All helpers are no-ops in one process,
except :func:`sync_gradients`'s non-finite guard.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size() -> int:
    """Processes in the default group (1 when none is initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_gradients(params: Iterable[nn.Parameter], *, clamp: float = 1e5) -> None:
    """Average the existing ``.grad`` of ``params`` over processes; NaN → 0, ±inf → ±``clamp``.

    Parameters without a gradient are skipped: every rank runs the same graph,
    so which parameters have one is the same everywhere.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    world = world_size()
    if world == 1:
        for g in grads:
            torch.nan_to_num_(g, nan=0.0, posinf=clamp, neginf=-clamp)
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    torch.nan_to_num_(flat, nan=0.0, posinf=clamp, neginf=-clamp)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view(g.shape))
        offset += n


def average_(tensors: Iterable[Tensor]) -> None:
    """All-reduce-average floating ``tensors`` in place (one collective)."""
    items = [t for t in tensors if t.is_floating_point()]
    world = world_size()
    if world == 1 or not items:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in items])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    with torch.no_grad():
        for t in items:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view(t.shape).to(t.dtype))
            offset += n


def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Rank ``src``'s parameters and buffers on every rank."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)
