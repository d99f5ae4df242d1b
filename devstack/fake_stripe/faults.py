"""Scripted faults: the Fake fails on demand (FakeProcessor.add_fault).

A fault stands for one call of an operation going wrong the way Stripe can:
an HTTP error (429 and 5xx transient, other 4xx permanent), no response at
all (NETWORK_FAULT, or a timeout), a response lost after the call took effect
(`after`), or the caller's process dying right after it took effect
(`crash`, ProcessCrash), or an answer that arrives late (`delay`: the call
took effect, its answer takes that many seconds while the rest of Stripe
goes on). Faults queue per operation, first in first out.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

from billing.processor.base import PROCESSOR_METHODS
from billing.processor.errors import NETWORK, TIMEOUT, ProcessorFailure

# The DESIGN's local control route scripts faults for "report_meter_event"
# (the outbox's name for delivering usage); it means whichever of the two
# delivery calls the reporter makes. "*" matches any operation.
FAULT_ALIASES: Final[dict[str, frozenset[str]]] = {
    "report_meter_event": frozenset({"create_meter_event", "send_meter_events"}),
    "*": PROCESSOR_METHODS,
}
# add_fault(op, NETWORK_FAULT): no HTTP response at all (connection failed);
# with code="timeout", the request timed out.
NETWORK_FAULT: Final = 0
# add_fault(op, SLOW, delay=s): no failure, the call runs `delay` seconds late
# (after=True: it takes effect at once and its answer comes late); clearing the
# faults answers a waiting call at once.
SLOW: Final = 200


class ProcessCrash(BaseException):
    """A scripted crash (add_fault(..., crash=True)): the call took effect and
    its caller's process must die now, before it can record the result.

    A BaseException, so no `except Exception` in the billing code can swallow
    it when the Fake runs in the caller's own process. Through the local
    stack's RPC (rpc.py) it becomes an answer that makes the calling worker
    process exit (remote.py)."""


_DEFAULT_FAULT_MESSAGES: Final = {
    400: "Invalid request.",
    401: "Invalid API Key provided.",
    402: "Your card was declined.",
    403: "The provided key does not have access to this resource.",
    404: "No such object.",
    409: "This object cannot be accessed right now because another API request or Stripe process is accessing it.",
    429: "Too many requests hit the API too quickly.",
}


@dataclass
class Fault:
    status: int
    code: str | None
    message: str | None
    remaining: int
    after: bool
    crash: bool = False
    skip: int = 0  # calls that go through before the fault starts
    delay: float = 0.0  # seconds the call waits before it runs (a slow Stripe)


class ErrorFactory(Protocol):
    """How the Fake builds a Stripe error (FakeCore._error)."""

    def __call__(self, status: int, message: str, *, code: str | None = None) -> ProcessorFailure: ...


class FaultQueue:
    """The faults still to happen, per operation name or alias (FAULT_ALIASES)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        # Set (and replaced) by clear(): wakes the calls waiting out a delay.
        self._released = threading.Event()

    def add(
        self,
        operation: str,
        status: int,
        code: str | None = None,
        times: int = 1,
        message: str | None = None,
        *,
        after: bool = False,
        crash: bool = False,
        skip: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for the next `times` calls of `operation`, after `skip`
        calls that go through (see FakeProcessor.add_fault)."""
        if operation not in PROCESSOR_METHODS and operation not in FAULT_ALIASES:
            raise ValueError(f"add_fault: unknown operation {operation!r}")
        if times < 1:
            raise ValueError("add_fault: times must be at least 1")
        if not 0 <= delay <= 30 or (status == SLOW and not delay):
            raise ValueError("add_fault: delay is 0 to 30 seconds, and a slow answer (status 200) needs one")
        if status not in (NETWORK_FAULT, SLOW) and not 400 <= status <= 599:
            raise ValueError("add_fault: status must be 0 (network), 200 (slow) or an HTTP error status")
        self._queues.setdefault(operation, deque()).append(
            Fault(status, code, message, times, after or crash, crash, max(0, int(skip)), float(delay)))

    def take(self, operation: str) -> Fault | None:
        """The fault this call of `operation` meets, if any: its own queue
        first, then its aliases' in name order."""
        names = [operation, *sorted(alias for alias, ops in FAULT_ALIASES.items() if operation in ops)]
        for name in names:
            queue = self._queues.get(name)
            if queue:
                fault = queue[0]
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault
        return None

    def clear(self) -> None:
        """Forget the faults still queued, and answer the calls still waiting
        out a delay now."""
        self._queues.clear()
        released, self._released = self._released, threading.Event()
        released.set()

    def wait(self, seconds: float) -> None:
        """Wait out a delay: `seconds`, or until clear()."""
        self._released.wait(seconds)

    def pending(self) -> dict[str, int]:
        """operation -> how many calls still fail."""
        return {op: sum(f.remaining for f in q) for op, q in self._queues.items() if q}


def failure_for(fault: Fault, error: ErrorFactory) -> ProcessorFailure:
    """The failure a call meeting `fault` raises."""
    if fault.status == NETWORK_FAULT:
        timed_out = fault.code == TIMEOUT
        return ProcessorFailure(
            fault.message or ("timed out waiting for Stripe" if timed_out else "could not reach Stripe"),
            error_type=TIMEOUT if timed_out else NETWORK,
        )
    message = fault.message or _DEFAULT_FAULT_MESSAGES.get(
        fault.status, "An unknown error occurred" if fault.status >= 500 else "Request failed."
    )
    code = fault.code if fault.code is not None else ("rate_limit" if fault.status == 429 else None)
    return error(fault.status, message, code=code)
