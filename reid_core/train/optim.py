"""AdamW (no weight decay on biases and norm parameters) with linear warm-up and cosine decay."""
from __future__ import annotations

import math

import torch
from torch import nn


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR factor at ``step``: linear 1/warmup … 1 over ``warmup`` steps, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    extra: list[nn.Parameter] | None = None, extra_lr_mult: float = 1.0) -> torch.optim.AdamW:
    """AdamW with two groups: weights (decayed) and 1-D parameters such as biases and norm scales (not).

    ``extra`` parameters (a proxy loss's proxies) form a third group, undecayed, at ``lr × extra_lr_mult``.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0, "lr": lr * extra_lr_mult})
    return torch.optim.AdamW(groups, lr=lr)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                    min_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`warmup_cosine`.

    The schedule is a closure, so LambdaLR's state dict keeps only the step
    count: a resumed run follows the *current* budget's schedule.
    """
    def factor(step: int) -> float:
        return warmup_cosine(step, warmup, total, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimizer state tensors their parameter's memory format (e.g. channels_last).

    ``Optimizer.load_state_dict`` restores contiguous tensors, while an
    uninterrupted run's moments share the parameter's layout; matching it keeps
    a resumed run's update kernels on the same (layout-specific) code path.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
