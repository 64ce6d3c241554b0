"""Phantom difficulties: ``standard`` (the original phantom) and ``hard`` (look-alike patients, wide nuisance).

``hard`` adds what makes real archives harder than the standard phantom:
shared anatomy templates (:mod:`~reid_core.data.phantom.twins`), wider
acquisition and processing nuisance (:data:`~reid_core.data.phantom.acquisition.HARD`)
and distinctive marks at realistic (low) rates.
"""
from __future__ import annotations

from typing import Literal

Difficulty = Literal["standard", "hard"]
DIFFICULTIES: tuple[str, ...] = ("standard", "hard")


def check_difficulty(value: object) -> Difficulty:
    """``value`` as a difficulty name; ValueError naming the choices otherwise."""
    if value not in DIFFICULTIES:
        raise ValueError(f"unknown phantom difficulty {value!r}; choose one of {', '.join(DIFFICULTIES)}")
    return value  # type: ignore[return-value]
