"""Read ahead in a background thread: ``thread_prefetch(items, depth)`` yields ``items[0], items[1], …``.

Used wherever batches come from a memory-mapped store while the model runs
(embedding, training with ``num_workers=0``). Errors raised while reading are
re-raised in the consumer. Closing the generator (or leaving the loop) stops
and joins the reader, so no thread is left reading while the interpreter exits
(a daemon thread caught mid-read at exit can abort the process).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence, TypeVar

T = TypeVar("T")
_JOIN_TIMEOUT_S = 10.0


def thread_prefetch(items: Sequence[T], depth: int = 4) -> Iterator[T]:
    """Yield every element of ``items`` in order, read up to ``depth`` ahead by one thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for i in range(len(items)):
                if not put(items[i]):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    thread = threading.Thread(target=work, name="cxr-reid-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=_JOIN_TIMEOUT_S)
