"""The one background reader (reid_core.data.prefetch.thread_prefetch) of embedding and of every trainer."""
from __future__ import annotations

import itertools
import threading

import pytest

from reid_core.data.prefetch import thread_prefetch


class Indexed:
    """A dataset whose __getitem__ never raises IndexError: only its length ends it."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> int:
        return i * 10


def _readers() -> int:
    return sum(t.name == "cxr-reid-prefetch" for t in threading.enumerate())


def test_a_sized_dataset_is_read_in_order_up_to_its_length():
    assert list(thread_prefetch(Indexed(), depth=2)) == [0, 10, 20, 30, 40]


def test_an_endless_stream_stops_when_closed_and_leaves_no_reader():
    before = _readers()
    stream = thread_prefetch(itertools.count(), depth=3)
    assert [next(stream) for _ in range(7)] == list(range(7))
    stream.close()
    assert _readers() == before


def test_a_reading_error_reaches_the_consumer():
    def broken():
        yield 1
        raise OSError("disk went away")

    stream = thread_prefetch(broken())
    assert next(stream) == 1
    with pytest.raises(OSError, match="disk went away"):
        next(stream)
