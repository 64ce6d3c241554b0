"""Exact structural equality of nested states for the tests (no pytest import)."""
from __future__ import annotations

import math
from typing import Any, Collection

import numpy as np
import torch


def assert_same(a: Any, b: Any, path: str = "root", ignore: Collection[str] = ()) -> None:
    """Exact structural equality: types, dict order, dtypes, values (NaN == NaN); dict keys in ``ignore`` skipped."""
    assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            if k not in ignore:
                assert_same(a[k], b[k], f"{path}/{k}", ignore)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}/{i}", ignore)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
