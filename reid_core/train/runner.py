"""The command-line side of the run layer, shared by ``cxr-reid train``, ``train-gan`` and ``train-cae``.

:func:`resolve_config` applies ``--set`` overrides and then the command's dedicated
flags to a config; :func:`run_training` prints the resolved config
(``--print-config``) or trains and prints a one-line outcome, on the main process only.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Mapping, Sequence, TypeVar

from reid_core.errors import TrainingError

C = TypeVar("C")
R = TypeVar("R")


def add_run_arguments(parser: argparse.ArgumentParser, folder: str, budget: str) -> argparse.ArgumentParser:
    """The options every trainer's command has: ``--resume/--no-resume`` (the run in ``folder``),
    ``--stop-after-<budget>`` (a session slice, state saved), ``--print-config`` and ``--quiet``."""
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help=f"continue the run in {folder} (default); --no-resume starts over")
    parser.add_argument(f"--stop-after-{budget}", type=float if budget == "kimg" else int,
                        help=f"end this session after N {budget}, saving the resume state (time-limited jobs)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def resolve_config(config: C, overrides: Sequence[str], flags: Mapping[str, Any] | None = None) -> C:
    """``config`` with ``key=value`` ``overrides`` and then ``flags`` (a dedicated flag's key → value;
    None means not given) applied; an invalid result is a :class:`TrainingError` naming the option."""
    items = list(overrides) + [f"{key}={json.dumps(value)}" for key, value in (flags or {}).items()
                               if value is not None]
    try:
        return config.with_overrides(items)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def is_main_process() -> bool:
    """Rank 0 under ``torchrun`` (or a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_training(args: argparse.Namespace, config: Any, train: Callable[[], R], outcome: Callable[[R], str]) -> int:
    """Print ``config`` as JSON when ``args.print_config``, else ``train()`` and print ``outcome(result)``;
    only the main process prints. Returns the exit code (0); user errors travel as CxrReidError."""
    if args.print_config:
        if is_main_process():
            print(json.dumps(config.to_dict(), indent=2))
        return 0
    result = train()
    if is_main_process():
        print(outcome(result))
    return 0
