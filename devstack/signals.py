"""Waiting for Ctrl-C or SIGTERM in a process full of threads.

`threading.Event().wait()` with a handler that sets the event looks right and
hangs now and then: the kernel may deliver a process-directed signal to any
thread that does not block it, and Python then only flags it for the main
thread, which sleeps in a lock acquire that nothing interrupts
(python/cpython#85300). A handler that takes a lock can also deadlock when it
runs while the main thread holds that same lock inside `Event.wait`
(python/cpython#126434). So the handler only records, and the main thread
sleeps in short steps, running any pending handler between them.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Installed on construction, so a signal that comes before `wait()` is kept."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.received: list[int] = []
        for signum in signals:
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        # list.append takes no lock a handler could deadlock on.
        self.received.append(signum)

    def wait(self, poll_seconds: float = 0.2) -> int:
        """Block until a stop signal has come, and return it."""
        while not self.received:
            time.sleep(poll_seconds)
        return self.received[0]
