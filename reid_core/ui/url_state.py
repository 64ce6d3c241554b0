"""A page's view in its URL: which widget keys travel as which query parameters, parsed and checked.

A page declares its :class:`UrlField` s (URL parameter ↔ ``st.session_state`` key ↔ parser). The page
helper (``pages/_shared.sync_url``) then

* on arrival, and whenever the URL changed from what the page last wrote (a shared link, a link from
  another page, the browser's back button), copies every *valid* parameter into its widget key;
* after the widgets ran, writes the widgets' values back, so reloading or sharing the URL restores the view.

Parsers raise ``ValueError`` on a value they do not accept (an unknown image id, a PC out of range): a bad
or stale link falls back to the page's defaults for that field instead of failing. Nothing here imports
streamlit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Parser = Callable[[str], Any]


@dataclass(frozen=True)
class UrlField:
    """One piece of a page's state: ``param`` in the URL, ``key`` in ``st.session_state``, ``parse`` text → value;
    a value equal to ``default`` is left out of the URL (``pc3=0`` for every untouched slider is noise)."""

    param: str
    key: str
    parse: Parser
    default: Any = None


def choice(options: Iterable[Any], cast: Callable[[str], Any] = str) -> Parser:
    """A parser accepting only ``cast(text)`` values among ``options`` (compared after the cast)."""
    allowed = list(options)
    allowed_set = set(allowed)

    def parse(text: str) -> Any:
        value = cast(text)
        if value not in allowed_set:
            raise ValueError(f"{text!r} is not one of the {len(allowed)} options")
        return value

    return parse


def _number_in(cast: Callable[[str], float], low: float, high: float) -> Parser:
    def parse(text: str) -> Any:
        value = cast(text)
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{text!r} outside [{low}, {high}]")
        return value

    return parse


def int_in(low: int, high: int) -> Parser:
    """A parser of integers in ``[low, high]``."""
    return _number_in(int, low, high)


def float_in(low: float, high: float) -> Parser:
    """A parser of finite floats in ``[low, high]``."""
    return _number_in(float, low, high)


def parse_params(params: Mapping[str, str], fields: Iterable[UrlField],
                 only: Collection[str] | None = None) -> dict[str, Any]:
    """``{session key: value}`` of the fields whose parameter is in ``params`` and parses (others are skipped).

    ``only``: consider just these parameter names (those that changed).
    """
    out: dict[str, Any] = {}
    for f in fields:
        if f.param not in params or (only is not None and f.param not in only):
            continue
        try:
            out[f.key] = f.parse(str(params[f.param]))
        except (TypeError, ValueError):
            continue
    return out


def changed(params: Mapping[str, str], written: Mapping[str, str] | None, fields: Iterable[UrlField]) -> set[str]:
    """The fields' parameters whose URL value differs from what the page last ``written`` (all present ones
    when it wrote nothing yet, i.e. on arrival)."""
    names = [f.param for f in fields if f.param in params]
    if written is None:
        return set(names)
    return {n for n in names if str(params[n]) != str(written.get(n))}


def encode(values: Mapping[str, Any], fields: Iterable[UrlField]) -> dict[str, str]:
    """``{param: text}`` of the fields whose key has a value in ``values`` (None and default values left out)."""
    out: dict[str, str] = {}
    for f in fields:
        value = values.get(f.key)
        if value is None or (f.default is not None and value == f.default):
            continue
        out[f.param] = f"{value:g}" if isinstance(value, float) else str(value)
    return out
