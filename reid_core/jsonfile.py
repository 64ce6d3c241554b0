"""Reading the small JSON files of a workspace: an object, or a typed error naming the file.

Every workspace JSON (``workspace.json``, ``report.json``, sidecars, states,
``metrics.json``) is an object at top level. A file that is missing, unreadable,
not UTF-8, not JSON, or JSON of another shape (``[]``, ``null``) raises the
caller's error type instead of surfacing as ``AttributeError: 'list' object has
no attribute 'get'`` further down.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reid_core.errors import CxrReidError, WorkspaceError

__all__ = ["as_dict", "read_json_object"]


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
