"""The small JSON files of a workspace: reading an object (or a typed error naming the file), and
:func:`json_safe` for what is written.

Every workspace JSON (``workspace.json``, ``report.json``, sidecars, states,
``metrics.json``) is an object at top level. A file that is missing, unreadable,
not UTF-8, not JSON, or JSON of another shape (``[]``, ``null``) raises the
caller's error type instead of surfacing as ``AttributeError: 'list' object has
no attribute 'get'`` further down.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from reid_core.errors import CxrReidError, WorkspaceError

__all__ = ["as_dict", "json_safe", "read_json_object"]


def read_json_object(path: str | Path, error: type[CxrReidError] = WorkspaceError) -> dict[str, Any]:
    """The JSON object stored in ``path``; anything else raises ``error`` with the path and the cause."""
    p = Path(path)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise error(f"{p}: not found") from None
    except OSError as exc:
        raise error(f"{p}: unreadable ({type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise error(f"{p}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise error(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise error(f"{p}: expected a JSON object, found {type(data).__name__}")
    return data


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else an empty one (for optional nested sections)."""
    return value if isinstance(value, dict) else {}


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN/inf → None, numpy scalars → Python numbers, keys → strings
    (through dicts, lists and tuples)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
