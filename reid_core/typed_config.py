"""One config mechanism: dataclasses with typed fields, JSON round trips and dotted ``key=value`` overrides.

A config class is a ``@dataclass`` that inherits :class:`TypedConfig`; its fields
may be ``bool``/``int``/``float``/``str``, ``Literal[...]``, optionals of those,
``tuple[float, ...]``-like tuples, and nested ``TypedConfig`` dataclasses.

* :meth:`TypedConfig.from_dict` refuses unknown keys (naming the valid ones)
  and wrongly typed values (ints are accepted where floats are expected);
  missing keys take their defaults.
* :meth:`TypedConfig.to_dict` returns plain JSON (tuples as lists), so
  ``cls.from_dict(cfg.to_dict()) == cfg``.
* :meth:`TypedConfig.with_overrides` applies ``a=1`` / ``arch.w_dim=128``
  strings (values parsed as JSON when they parse, else taken as strings).

Field validation beyond types lives in each class's ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Mapping, Sequence, TypeVar

from reid_core.train.config import check_type, parse_value

T = TypeVar("T", bound="TypedConfig")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and issubclass(hint, TypedConfig)


def _check_tuple(value: Any, hint: Any, name: str) -> tuple:
    args = typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {type(value).__name__} {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_type(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ValueError(f"{name} must have {len(args)} values, got {len(value)}")
    return tuple(check_type(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


class TypedConfig:
    """Mixin for config dataclasses (see module docstring)."""

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], _prefix: str = "") -> T:
        """A config from plain data; ValueError names the first unknown key or badly typed value."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"{_prefix.rstrip('.') or cls.__name__} must be a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown key(s) {[_prefix + k for k in unknown]}; valid keys: {names}")
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            hint, name = hints[key], _prefix + key
            if _is_config(hint):
                kwargs[key] = hint.from_dict(value, name + ".")
            elif typing.get_origin(hint) is tuple:
                kwargs[key] = _check_tuple(value, hint, name)
            else:
                kwargs[key] = check_type(value, hint, name)
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise ValueError(f"{_prefix}{exc}" if _prefix else str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples as lists, nested configs as dicts)."""
        def plain(v: Any) -> Any:
            if isinstance(v, TypedConfig):
                return v.to_dict()
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def with_overrides(self: T, overrides: Sequence[str]) -> T:
        """A copy with ``key=value`` overrides applied (``a.b=v`` reaches nested configs)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"override {item!r} must look like key=value (e.g. lr=0.002 or arch.w_dim=128)")
            node: dict[str, Any] = data
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f"override {item!r}: {part!r} is not a group of options")
                node = node[part]
            if leaf not in node:
                raise ValueError(f"override {item!r}: unknown key {key!r}; valid keys here: {sorted(node)}")
            node[leaf] = parse_value(raw)
        return type(self).from_dict(data)
