"""Checkpoints as safetensors weights + a JSON record, written atomically and verified on load.

Layout of one checkpoint in a folder (the workspace's ``embedder/``)::

    model.safetensors   tensors only (no code, nothing is ever unpickled)
    config.json         {"format", "format_version", "weights": {file, bytes, sha256, …}, "meta": {…}}

``<name>.safetensors`` and ``<meta_name>.json`` default to ``model`` / ``config``;
``gan/`` uses ``save_checkpoint(dir, tensors, meta, name="G_ema")``.

Writes are atomic: both files go to hidden temp files in the same folder, are
fsync'ed, then ``os.replace``'d over the old ones (weights first, the JSON
record last) and the folder is fsync'ed. A crash before the first replace leaves
the previous checkpoint untouched; a crash between the two replaces leaves new
weights next to the old record, which the SHA-256 check reports on load instead
of silently using mismatched files.

Loading reads the weights file once into memory, checks its size and SHA-256
against the JSON record and parses those same bytes with
``safetensors.torch.load`` (so the verified bytes are the parsed bytes). Every
failure (missing, truncated, tampered, invalid JSON, wrong keys) raises
:class:`~reid_core.errors.CheckpointError`. Neither ``torch.load`` nor
``pickle`` is used anywhere.

:func:`save_state` / :func:`load_state` store training-resume state (optimizer
and scheduler state dicts, RNG states, counters) in the same two-file format:
tensors under path-like keys (``optimizer/state/0/exp_avg``) in safetensors,
everything else as tagged JSON that rebuilds ints-as-keys, tuples, NaN/inf,
numpy arrays and numpy scalars exactly.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from reid_core import artefact_names as names
from reid_core.atomic import remove_stale_temps
from reid_core.errors import CheckpointError

if TYPE_CHECKING:  # the Embedder (and timm) are imported lazily: this module stays light
    from reid_core.model import Embedder

log = logging.getLogger(__name__)
M = TypeVar("M", bound=torch.nn.Module)

FORMAT = "cxr-reid-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
_CAST_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
_RESERVED_STATE_NAMES = frozenset({names.EMBEDDER_NAME, names.EMBEDDER_META})


class CheckpointFiles(NamedTuple):
    """The two files of a checkpoint."""

    weights: Path
    meta: Path


# --------------------------------------------------------------------------- low level

def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{what} must be a plain file stem (no path separators, no leading dot), got {name!r}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; os.replace is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(directory: Path, files: list[tuple[str, bytes]]) -> None:
    """Write every (filename, data) to a temp file, fsync, then os.replace them in order."""
    tmps: list[Path] = []
    for filename, _ in files:  # what a writer killed mid-write left behind
        remove_stale_temps(directory / filename)
    try:
        for filename, data in files:
            tmp = directory / f".{filename}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            tmps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for (filename, _), tmp in zip(files, tmps):
            os.replace(tmp, directory / filename)
        _fsync_dir(directory)
    finally:
        for tmp in tmps:  # after a successful replace the temp name no longer exists
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _prepare_tensors(tensors: dict[str, Tensor], dtype: torch.dtype | None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """CPU, contiguous, unshared copies (cast to ``dtype`` where floating); returns also the dtypes to restore."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict[str, Tensor], got {type(tensors).__name__}")
    if dtype is not None and dtype not in _CAST_DTYPES:
        raise ValueError(f"storage dtype must be None, torch.float16 or torch.bfloat16, got {dtype}")
    out: dict[str, Tensor] = {}
    restore: dict[str, str] = {}
    seen_storages: set[int] = set()
    for key, t in tensors.items():
        if not isinstance(key, str) or not isinstance(t, Tensor):
            raise TypeError(f"tensors must map str to Tensor; got {type(key).__name__} → {type(t).__name__}")
        t = t.detach().to("cpu").contiguous()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype and t.dtype.itemsize > dtype.itemsize:
            cast = t.to(dtype)
            if bool(torch.isinf(cast).any()) and not bool(torch.isinf(t).any()):
                raise ValueError(f"tensor {key!r} overflows {_CAST_DTYPES[dtype]} (max |x| = "
                                 f"{float(t.abs().max()):.4g}); save it without dtype=")
            restore[key] = str(t.dtype).removeprefix("torch.")
            t = cast
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen_storages or t.numel() != t.untyped_storage().nbytes() // max(t.element_size(), 1):
            t = t.clone()  # safetensors refuses tensors sharing (or viewing part of) a storage
        seen_storages.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out, restore


def _json_bytes(record: dict[str, Any]) -> bytes:
    try:
        return (json.dumps(record, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta must be plain JSON (str keys, finite numbers, lists, dicts): {exc}") from None


# --------------------------------------------------------------------------- generic checkpoint

def save_checkpoint(directory: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any],
                    name: str = names.EMBEDDER_NAME, *, meta_name: str = names.EMBEDDER_META,
                    dtype: torch.dtype | None = None) -> CheckpointFiles:
    """Atomically write ``<name>.safetensors`` and ``<meta_name>.json`` into ``directory`` (created if needed).

    ``meta`` must be plain JSON (no NaN/inf). ``dtype=torch.float16`` (or bfloat16)
    stores wider floating tensors at that precision; :func:`load_checkpoint` casts
    them back to their original dtype (overflowing values raise ValueError).
    """
    _check_name(name, "name")
    _check_name(meta_name, "meta_name")
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    from safetensors.torch import save as st_save

    directory = Path(directory)
    prepared, restore = _prepare_tensors(tensors, dtype)
    data = st_save(prepared, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    weights_file = name + WEIGHTS_SUFFIX
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": {
            "file": weights_file,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "num_tensors": len(prepared),
            "stored_dtype": _CAST_DTYPES.get(dtype) if dtype is not None else None,
            "restore_dtypes": restore,
        },
        "meta": meta,
    }
    meta_bytes = _json_bytes(record)  # fail on bad meta before touching the folder
    directory.mkdir(parents=True, exist_ok=True)
    meta_file = meta_name + ".json"
    _write_atomically(directory, [(weights_file, data), (meta_file, meta_bytes)])
    log.debug("saved checkpoint %s (%d tensors, %d bytes)", directory / weights_file, len(prepared), len(data))
    return CheckpointFiles(directory / weights_file, directory / meta_file)


def _read_record(directory: Path, meta_name: str) -> dict[str, Any]:
    path = directory / f"{meta_name}.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint record not found")
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cxr-reid checkpoint record (no \"format\": \"{FORMAT}\")")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version} was written by a newer cxr-reid "
                              f"(this one reads up to {FORMAT_VERSION}); upgrade cxr-reid")
    weights = record.get("weights")
    if (not isinstance(weights, dict) or not isinstance(weights.get("file"), str)
            or not isinstance(weights.get("sha256"), str) or not isinstance(weights.get("bytes"), int)
            or not isinstance(weights.get("restore_dtypes", {}), dict) or not isinstance(record.get("meta"), dict)):
        raise CheckpointError(f"{path}: malformed checkpoint record (weights/meta entries)")
    return record


def read_checkpoint_meta(directory: str | Path, *, meta_name: str = names.EMBEDDER_META) -> dict[str, Any]:
    """The ``meta`` of a checkpoint's JSON record, without reading or verifying the weights."""
    _check_name(meta_name, "meta_name")
    return _read_record(Path(directory), meta_name)["meta"]


def weights_sha256(directory: str | Path, *, meta_name: str = names.EMBEDDER_META) -> str:
    """The SHA-256 of a checkpoint's weights as its JSON record states it (the weights are not read)."""
    return str(_read_record(Path(directory), meta_name)["weights"]["sha256"])


def load_checkpoint(directory: str | Path, name: str = names.EMBEDDER_NAME, *, meta_name: str = names.EMBEDDER_META,
                    map_location: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`; returns ``(tensors, meta)``.

    Raises :class:`CheckpointError` when a file is missing, the weights are
    truncated or do not match the recorded SHA-256, or the JSON is invalid.
    """
    _check_name(name, "name")
    _check_name(meta_name, "meta_name")
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    directory = Path(directory)
    record = _read_record(directory, meta_name)
    info = record["weights"]
    weights_file = name + WEIGHTS_SUFFIX
    if info["file"] != weights_file:
        raise CheckpointError(f"{directory / (meta_name + '.json')} describes {info['file']!r}, not {weights_file!r}")
    path = directory / weights_file
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found (its record {meta_name}.json exists)")
    data = path.read_bytes()
    if len(data) != info["bytes"]:
        raise CheckpointError(f"{path}: truncated or modified: {len(data)} bytes on disk, "
                              f"{info['bytes']} recorded in {meta_name}.json")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise CheckpointError(f"{path}: SHA-256 mismatch ({digest[:12]}… on disk, {info['sha256'][:12]}… "
                              f"recorded in {meta_name}.json): the file was modified or a save was interrupted")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors data ({exc})") from None
    for key, dtype_name in info.get("restore_dtypes", {}).items():
        dtype = getattr(torch, str(dtype_name), None)
        if key not in tensors or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{path}: bad restore_dtypes entry {key!r} → {dtype_name!r}")
        tensors[key] = tensors[key].to(dtype)
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors, record["meta"]


# --------------------------------------------------------------------------- embedder

def save_embedder(directory: str | Path, model: "Embedder", extra_meta: dict[str, Any] | None = None,
                  *, dtype: torch.dtype | None = None) -> CheckpointFiles:
    """Write ``model.safetensors`` + ``config.json`` (EmbedderConfig, input normalisation, versions, ``extra``).

    ``dtype=torch.float16`` halves the file; :func:`load_embedder` restores float32.
    """
    import timm

    import reid_core
    from reid_core.model import INPUT_MEAN, INPUT_STD

    meta = {
        "kind": "embedder",
        "embedder": model.config.to_dict(),
        "num_features": model.num_features,
        "input_norm": {"mean": INPUT_MEAN, "std": INPUT_STD},
        "versions": {"cxr_reid": reid_core.__version__, "timm": timm.__version__,
                     "torch": torch.__version__.split("+")[0]},
        "extra": dict(extra_meta or {}),
    }
    return save_checkpoint(directory, model.state_dict(), meta, names.EMBEDDER_NAME,
                           meta_name=names.EMBEDDER_META, dtype=dtype)


def state_dict_mismatches(module: torch.nn.Module, tensors: dict[str, Tensor], limit: int = 10) -> list[str]:
    """How ``tensors`` fail to fit ``module.state_dict()``: missing and unexpected keys, shape mismatches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"missing keys {missing[:limit]}" + (" …" if len(missing) > limit else ""))
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:limit]}" + (" …" if len(unexpected) > limit else ""))
    if wrong:
        parts.append("shape mismatches " + "; ".join(wrong[:limit]))
    return parts


def build_to_fit(factory: Callable[[], M], tensors: dict[str, Tensor], config_path: Path, weights_path: Path,
                 what: str) -> M:
    """``factory()``, once its state dict is known to fit ``tensors`` key by key and shape by shape.

    The record's metadata (``config.json``) is not covered by the weights' SHA-256, so a
    tampered architecture (a 3,000,000-wide head, ``z_dim = 10^9``) could make the
    real build allocate gigabytes before any check. The module is therefore first
    built on PyTorch's ``meta`` device, which allocates nothing, and compared with
    the verified weights; only a fitting architecture is built for real.
    """
    try:
        with torch.device("meta"):
            skeleton = factory()
    except (TypeError, ValueError, RuntimeError, OverflowError, AssertionError) as exc:
        raise CheckpointError(f"{config_path}: cannot rebuild the {what}: {type(exc).__name__}: {exc}") from None
    problems = state_dict_mismatches(skeleton, tensors, limit=8)
    del skeleton
    if problems:
        raise CheckpointError(f"{weights_path} does not fit the {what} recorded in {config_path.name}: "
                              + ", ".join(problems))
    return factory()


def load_embedder(directory: str | Path, map_location: str | torch.device = "cpu") -> "Embedder":
    """Rebuild the Embedder saved by :func:`save_embedder` (strict key/shape check), in eval mode."""
    from reid_core.model import INPUT_MEAN, INPUT_STD, Embedder, EmbedderConfig

    directory = Path(directory)
    tensors, meta = load_checkpoint(directory, names.EMBEDDER_NAME, meta_name=names.EMBEDDER_META)
    where = directory / names.record_file(names.EMBEDDER_META)
    if meta.get("kind") != "embedder" or not isinstance(meta.get("embedder"), dict):
        raise CheckpointError(f"{where}: not an embedder checkpoint (kind={meta.get('kind')!r})")
    norm = meta.get("input_norm", {"mean": INPUT_MEAN, "std": INPUT_STD})
    if norm != {"mean": INPUT_MEAN, "std": INPUT_STD}:
        raise CheckpointError(f"{where}: trained with input normalisation {norm}, this cxr-reid uses "
                              f"mean={INPUT_MEAN}, std={INPUT_STD}")
    try:
        config = EmbedderConfig.from_dict(meta["embedder"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the embedder: {exc}") from None
    model = build_to_fit(lambda: Embedder(config), tensors, where, directory / names.weights_file(names.EMBEDDER_NAME),
                         f"embedder (backbone {config.backbone!r})")
    model.load_state_dict(tensors, strict=True)
    return model.to(map_location).eval()


# --------------------------------------------------------------------------- training-resume state

class _Encoder:
    """Nested python state → tagged JSON tree + flat tensor dict."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def _slot(self, path: str) -> str:
        key, n = path or "root", 1
        while key in self.tensors:
            n += 1
            key = f"{path}~{n}"
        return key

    def encode(self, obj: Any, path: str) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int) and type(obj) is int:
            return obj
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, Tensor):
            key = self._slot(path)
            self.tensors[key] = obj.detach()
            return {"__tensor__": key}
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError(f"save_state cannot store an object array at {path!r}")
            key = self._slot(path)
            raw = np.frombuffer(np.ascontiguousarray(obj).tobytes(), dtype=np.uint8).copy()
            self.tensors[key] = torch.from_numpy(raw)
            return {"__ndarray__": key, "dtype": obj.dtype.str, "shape": list(obj.shape)}
        if isinstance(obj, np.generic):
            value = obj.item()
            if not isinstance(value, (bool, int, float)):
                raise TypeError(f"save_state cannot store numpy scalar {obj.dtype} at {path!r}")
            return {"__npscalar__": obj.dtype.str, "value": self.encode(value, path)}
        if type(obj) is tuple:
            return {"__tuple__": [self.encode(v, f"{path}/{i}") for i, v in enumerate(obj)]}
        if type(obj) is list:
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, (Tensor, np.ndarray, list, dict)):
                    raise TypeError(f"save_state cannot use a {type(k).__name__} as a dict key at {path!r}")
                items.append([self.encode(k, f"{path}/<key>"), self.encode(v, f"{path}/{k}")])
            return {"__odict__" if type(obj) is OrderedDict else "__dict__": items}
        raise TypeError(f"save_state cannot store a {type(obj).__module__}.{type(obj).__qualname__} at "
                        f"{path.lstrip('/') or '<root>'!r} (supported: dict, list, tuple, str, int, float, bool, "
                        "None, torch.Tensor, numpy arrays and scalars)")


def _decode(node: Any, tensors: dict[str, Tensor]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if isinstance(node, dict) and len(node) >= 1:
        if "__dict__" in node:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in node["__dict__"]}
        if "__odict__" in node:
            return OrderedDict((_decode(k, tensors), _decode(v, tensors)) for k, v in node["__odict__"])
        if "__tuple__" in node:
            return tuple(_decode(v, tensors) for v in node["__tuple__"])
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__ndarray__" in node:
            raw = tensors[node["__ndarray__"]].numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(node["dtype"])).reshape(node["shape"]).copy()
        if "__npscalar__" in node:
            return np.dtype(node["__npscalar__"]).type(_decode(node["value"], tensors))
        if "__float__" in node:
            return float(node["__float__"])
    raise ValueError(f"unknown node {str(node)[:80]!r}")


def save_state(directory: str | Path, name: str, state: dict[str, Any]) -> CheckpointFiles:
    """Atomically write training-resume ``state`` as ``<name>.safetensors`` + ``<name>.json``.

    ``state`` may nest dicts (any hashable scalar/tuple keys), lists, tuples,
    tensors, numpy arrays/scalars and python scalars: e.g.
    ``{"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": 120,
    "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state,
    "python": random.getstate()}}``. :func:`load_state` rebuilds it exactly (values,
    dtypes, tuple-vs-list, dict-vs-OrderedDict, int keys, key order; tensors come back
    on CPU as separate tensors; the ``_metadata`` attribute of a module state dict is
    not kept, so store model weights with :func:`save_embedder` / :func:`save_checkpoint`).
    ``name`` may not be ``model`` or ``config`` (the embedder's own files).
    """
    _check_name(name, "name")
    if name in _RESERVED_STATE_NAMES:
        raise ValueError(f"save_state name {name!r} would overwrite the embedder checkpoint; use e.g. 'resume'")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    enc = _Encoder()
    tree = enc.encode(state, "")
    return save_checkpoint(directory, enc.tensors, {"kind": "state", "state": tree}, name, meta_name=name)


def load_state(directory: str | Path, name: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read back what :func:`save_state` wrote (verified like :func:`load_checkpoint`)."""
    tensors, meta = load_checkpoint(directory, name, meta_name=name, map_location=map_location)
    where = Path(directory) / f"{name}.json"
    if meta.get("kind") != "state" or "state" not in meta:
        raise CheckpointError(f"{where}: not a training-state checkpoint (kind={meta.get('kind')!r})")
    try:
        return _decode(meta["state"], tensors)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: malformed state tree ({exc})") from None
