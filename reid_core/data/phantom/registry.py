"""One way to file a phantom kind's function (mark samplers and drawers, finding drawers) under its name."""
from __future__ import annotations

from typing import Callable, Collection, TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F], known: Collection[str], what: str) -> Callable[..., Callable[[F], F]]:
    """A decorator factory: ``@reg("a", "b")`` files the decorated function in ``table`` under each kind.

    A kind outside ``known``, or one filed twice, is a ValueError naming ``what`` (e.g. "mark sampler").
    """
    def for_kinds(*kinds: str) -> Callable[[F], F]:
        def register(fn: F) -> F:
            for kind in kinds:
                if kind not in known or kind in table:
                    raise ValueError(f"{what} for {kind!r}: not a known kind ({sorted(known)}) or filed twice")
                table[kind] = fn
            return fn
        return register
    return for_kinds
