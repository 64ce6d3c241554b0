"""Graceful interruption: SIGINT/SIGTERM become a flag the training loop checks between steps."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator

log = logging.getLogger(__name__)


class StopRequest:
    """``requested`` turns True on the first SIGINT or SIGTERM; a second SIGINT raises KeyboardInterrupt at once.

    Handlers are installed only inside :meth:`installed` and only from the main
    thread (elsewhere signals cannot be caught and the flag simply stays False).
    """

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: finishing this step and saving the resume state "
                    "(press Ctrl-C again to abort without saving)", signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)
