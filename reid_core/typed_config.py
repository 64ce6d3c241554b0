"""One config mechanism: dataclasses with typed fields, JSON round trips, dotted overrides, checkpoint records.

A config class is a ``@dataclass`` (frozen or not) that inherits :class:`TypedConfig`.
Its fields may be ``bool``/``int``/``float``/``str``, ``Literal[...]``, ``X | None``,
``tuple[float, float]`` / ``tuple[float, ...]``, ``dict[str, Any]`` (free-form JSON
such as timm keyword arguments) and nested ``TypedConfig`` dataclasses.

* Construction checks every field's type (ints are accepted where floats are
  expected and become floats; lists become tuples; a nested config may be given
  as a mapping), then calls the class's :meth:`TypedConfig.validate` for its
  range and cross-field rules. Subclasses override ``validate``; one that must
  normalise raw input before the type checks extends ``__post_init__`` and
  calls ``super().__post_init__()``.
* :meth:`TypedConfig.from_dict` refuses unknown keys naming the valid ones;
  missing keys take their defaults. :meth:`TypedConfig.to_dict` returns plain
  JSON (tuples as lists), so ``cls.from_dict(cfg.to_dict()) == cfg``.
* :meth:`TypedConfig.with_overrides` applies ``a=1`` / ``model.embedding_dim=32``
  strings; values are parsed as JSON when they parse, else taken as strings
  (a ``str`` field always gets a string: ``preset=64`` means "64").
  A dotted key may add a key to a ``dict`` field (``model.backbone_kwargs.img_size=256``).
* :meth:`TypedConfig.from_file` reads a JSON (or, with PyYAML, YAML) file that
  holds either the config itself or a checkpoint record (``{"format": …, "meta":
  {…}}``) with the config under ``meta[<RECORD_KEYS>]``.

Refusals raise :class:`~reid_core.errors.ConfigError` (a ``ValueError``); a
``validate`` rule broken by a direct construction raises its own ``ValueError``,
which :meth:`~TypedConfig.from_dict` re-raises as a ConfigError.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence, TypeVar

from reid_core.errors import ConfigError

T = TypeVar("T", bound="TypedConfig")


# --------------------------------------------------------------------------- value checks

@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls`` (ClassVars left out)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def is_config_type(hint: Any) -> bool:
    """Whether the annotation ``hint`` is a nested config class."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and issubclass(hint, TypedConfig)


def _is_dict_type(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def check_type(value: Any, hint: Any, name: str) -> Any:
    """``value`` if it fits the annotation ``hint``, normalised (int → float, list → tuple); ConfigError if not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be one of {list(args)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, args, name)
    if origin is tuple:
        return _check_tuple(value, args, name)
    if is_config_type(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return hint.from_dict(value, name + ".")
        raise ConfigError(f"{name} must be a mapping of {hint.__name__} keys {hint.field_names()}, "
                          f"got {type(value).__name__} {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif _is_dict_type(hint):
        if isinstance(value, dict):
            return value
    elif hint is Any:
        return value
    else:
        raise TypeError(f"{name}: the config annotation {hint!r} is not supported by TypedConfig")
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{name} must be of type {type_name}, got {type(value).__name__} {value!r}")


def _check_union(value: Any, args: tuple[Any, ...], name: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return check_type(value, arg, name)
        except ConfigError as exc:
            errors.append(str(exc))
    if len(errors) == 1 and type(None) in args:
        raise ConfigError(f"{errors[0]} (or null)")
    raise ConfigError(errors[0] if len(errors) == 1 else f"{name}: {value!r} fits none of {args}")


def _check_tuple(value: Any, args: tuple[Any, ...], name: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {type(value).__name__} {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_type(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{name} must have {len(args)} values, got {len(value)}: {value!r}")
    return tuple(check_type(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def parse_value(text: str) -> Any:
    """An override's value: JSON when it parses (``1e-3``, ``true``, ``null``, ``[1,2]``), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("none", "null"):
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


# --------------------------------------------------------------------------- the base class

class TypedConfig:
    """Base of every config dataclass (see module docstring).

    ``RECORD_KEYS``: where a checkpoint record keeps this config under ``meta``
    (dotted paths, first found wins); empty when no record carries it.
    """

    RECORD_KEYS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.check_types()
        self.validate()

    def check_types(self) -> None:
        """Type-check (and normalise) every field in place; ConfigError names the first bad one."""
        for name, hint in field_hints(type(self)).items():
            value = getattr(self, name)
            checked = check_type(value, hint, name)
            if checked is not value:
                object.__setattr__(self, name, checked)  # works on frozen dataclasses too

    def validate(self) -> None:
        """Range and cross-field rules beyond the types; subclasses raise ValueError naming the field."""

    # ------------------------------------------------------------------ dicts

    @classmethod
    def field_names(cls) -> list[str]:
        """The config's keys, in declaration order."""
        return list(field_hints(cls))

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], _prefix: str = "") -> T:
        """A config from plain data; ConfigError names the first unknown, missing or badly typed key.

        Types are checked by the construction (:meth:`check_types`); errors inside a
        nested config name its full dotted path.
        """
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{_prefix.rstrip('.') or cls.__name__} must be a mapping, got {type(data).__name__}")
        names = cls.field_names()
        unknown = sorted(set(data) - set(names), key=str)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} key(s) {[_prefix + str(k) for k in unknown]}; "
                              f"valid keys: {names}")
        missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                   if f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{cls.__name__} needs key(s) {[_prefix + k for k in missing]}")
        try:
            return cls(**data)
        except ValueError as exc:
            message = str(exc)
            if _prefix and not message.startswith(_prefix):
                message = _prefix + message
            raise ConfigError(message) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples as lists, nested configs as dicts, dicts copied)."""
        return {name: _plain(getattr(self, name)) for name in field_hints(type(self))}

    # ------------------------------------------------------------------ overrides

    def with_overrides(self: T, overrides: Sequence[str]) -> T:
        """A copy with ``key=value`` overrides applied, type-checked; ConfigError names the bad override."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r} must look like key=value "
                                  "(e.g. lr=0.001 or model.embedding_dim=32)")
            _assign(type(self), data, key.split("."), raw, item)
        return type(self).from_dict(data)

    # ------------------------------------------------------------------ files and records

    @classmethod
    def from_record(cls: type[T], record: Mapping[str, Any], where: str = "record") -> T:
        """The config inside a checkpoint record (``record["meta"]`` at one of ``RECORD_KEYS``)."""
        meta = record.get("meta") if isinstance(record, Mapping) else None
        if not isinstance(meta, Mapping):
            raise ConfigError(f"{where}: not a checkpoint record (no 'meta' mapping)")
        for key in cls.RECORD_KEYS:
            node: Any = meta
            for part in key.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is not None:
                try:
                    return cls.from_dict(node)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: meta.{key}: {exc}") from None
        keys = " / ".join(f"meta.{k}" for k in cls.RECORD_KEYS) or "(none declared)"
        raise ConfigError(f"{where}: the record holds no {cls.__name__} (looked for {keys})")

    @classmethod
    def from_file(cls: type[T], path: str | Path) -> T:
        """A config from a JSON/YAML file holding the config itself or a checkpoint record carrying it."""
        path = Path(path)
        data = read_config_data(path)
        if isinstance(data, Mapping) and isinstance(data.get("meta"), Mapping) and cls.RECORD_KEYS:
            return cls.from_record(data, str(path))
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def read_config_data(path: Path) -> Any:
    """The parsed contents of a JSON file (``.yaml``/``.yml`` through PyYAML); ConfigError if unreadable."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the config as JSON") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def _plain(value: Any) -> Any:
    if isinstance(value, TypedConfig):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _assign(cls: type, data: dict[str, Any], parts: list[str], raw: str, item: str) -> None:
    """Set ``data[parts…]`` to the parsed ``raw``, walking the config classes so that only real keys are reached.

    A plain ``str`` field takes the text itself unless it parses as a JSON string
    (``preset=64`` is the name "64", not the number).
    """
    value = parse_value(raw)
    node = data
    for depth, part in enumerate(parts):
        hints, here = field_hints(cls), ".".join(parts[:depth + 1])
        if part not in hints:
            raise ConfigError(f"override {item!r}: unknown key {here!r}; valid keys here: {sorted(hints)}")
        if depth == len(parts) - 1:
            node[part] = raw.strip() if hints[part] is str and not isinstance(value, str) else value
            return
        hint = hints[part]
        if is_config_type(hint) and isinstance(node.get(part), dict):
            node, cls = node[part], hint
        elif _is_dict_type(hint):
            if depth != len(parts) - 2 or not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {here!r} is a dict of free keys; set one key "
                                  f"({here}.NAME=value) or the whole dict ({here}={{...}})")
            node[part] = {**node[part], parts[-1]: value}  # a free-form dict field may gain a key
            return
        else:
            nested = [k for k, h in hints.items() if is_config_type(h) or _is_dict_type(h)]
            raise ConfigError(f"override {item!r}: {here!r} is not a nested config; nested configs here: {nested}")
