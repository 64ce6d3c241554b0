"""Read ahead in a background thread: ``thread_prefetch(items, depth)`` yields the items of ``items`` in order.

The one reader of every trainer and of embedding: wherever batches come from a
memory-mapped store while the model runs (embedding, the embedder's training with
``num_workers=0``, the GAN's and the autoencoder's endless streams of real films). Errors raised while reading are
re-raised in the consumer. Closing the generator (or leaving the loop) stops
and joins the reader, so no thread is left reading while the interpreter exits
(a daemon thread caught mid-read at exit can abort the process).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_JOIN_TIMEOUT_S = 10.0


def thread_prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Yield every element of ``items`` in order (a sequence, or an iterator, endless ones included), read up to
    ``depth`` ahead by one thread; the reader runs from the first ``next()`` until exhausted or closed."""
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
            # a sized, indexable object is read by index up to its length (a dataset's __getitem__ need not
            # raise IndexError past the end, which plain iteration would rely on)
            sized = hasattr(items, "__len__") and hasattr(items, "__getitem__")
            for item in ((items[i] for i in range(len(items))) if sized else items):  # type: ignore[arg-type]
                if not put(item):
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
