"""Devices and precision, one place for every trainer and for embedding.

:func:`resolve_device` reads a device name, :func:`training_device` is the
stricter choice trainers make (one GPU per local rank; ``cuda`` without one is
a :class:`TrainingError`), :func:`autocast_context` is the one mixed-precision
set-up (bf16 autocast on CUDA; weights, gradients and optimiser state stay
float32, so no loss scaling) and :func:`synchronize` waits for queued device work.
"""
from __future__ import annotations

import contextlib

import torch

from reid_core.errors import TrainingError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA if available, else CPU; any other name as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def training_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``cpu``, or the GPU of ``local_rank`` (made current) when CUDA is there; TrainingError for ``cuda`` without."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for but torch sees no CUDA GPU "
                            f"(torch {torch.__version__}); use --device cpu or auto")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (CUDA steps run asynchronously), so timings are true; a no-op on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
