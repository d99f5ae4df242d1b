"""UsageBatcher: usage events buffered and sent 100 to a request
(POST /v1/usage/batch), for callers that report many: at batch size 100 a
hundredth of the API requests and Lambda invocations of one PUT per event.

It sends what it holds when it holds `max_events`, when its oldest event is
`max_age` seconds old (a background thread), on flush(), on close() (or the
end of its `with` block) and at interpreter exit. An event it took is never
dropped silently: it leaves the buffer only with an answer from the service
(accepted, replayed, or refused: see `results()`); one it could not send
(the service unreachable or busy past the client's retries) stays buffered,
is sent again on the next flush, and is raised as UsageBatchError (with the
events, in `unsent`): from flush() and close() at once, and from the next
add() when a background flush failed. At exit, what is still unsent is
written to stderr as JSON lines before the error is raised.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from billing_usage_client.errors import UsageError, UsageServerError
from billing_usage_client.events import MAX_BATCH, event_body, new_identifier

if TYPE_CHECKING:
    from billing_usage_client.client import UsageClient


class UsageBatchError(UsageServerError):
    """Events the batcher took and could not send yet (`unsent`, each with its
    identifier). Sending them again, by the next flush or yourself, is safe."""

    def __init__(self, message: str, unsent: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.unsent = unsent


class UsageBatcher:
    def __init__(self, client: UsageClient, *, max_events: int = MAX_BATCH, max_age: float = 5.0) -> None:
        if not 1 <= max_events <= MAX_BATCH:
            raise ValueError(f"max_events must be 1 to {MAX_BATCH}")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self._client = client
        self._max_events = max_events
        self._max_age = max_age
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._in_flight = 0  # taken out of the buffer by a flush, not answered yet
        self._oldest: float | None = None
        self._results: list[dict[str, Any]] = []
        self._failure: UsageBatchError | None = None  # of a background flush, raised by the next add()
        self._closed = False
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._age_flusher, name="usage-batcher", daemon=True)
        self._timer.start()
        atexit.register(self._at_exit)

    # -- taking events ------------------------------------------------------------------

    def add(self, event_name: str, value: int, *, customer_id: str | None = None,
            stripe_customer_id: str | None = None, owner: Mapping[str, str] | tuple[str, str] | None = None,
            timestamp: int | datetime | str | None = None, identifier: str | None = None,
            operation_id: str | None = None) -> str:
        """Buffer one usage event (as UsageClient.report takes it); its identifier.

        Raises UsageBatchError, without taking this event, when a background
        flush could not send earlier ones; or, this event taken, when the send
        it triggered (the buffer full) could not go out. Either way, every
        event in the error stays buffered for the next flush."""
        body = event_body(event_name, value, customer_id=customer_id, stripe_customer_id=stripe_customer_id,
                          owner=owner, timestamp=timestamp, operation_id=operation_id)
        body["identifier"] = identifier or new_identifier()
        with self._lock:
            if self._closed:
                raise RuntimeError("this UsageBatcher is closed")
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            self._buffer.append(body)
            if self._oldest is None:
                self._oldest = time.monotonic()
            full = len(self._buffer) >= self._max_events
        if full:
            self._flush(keep=True)
        return str(body["identifier"])

    # -- sending ------------------------------------------------------------------------

    def flush(self) -> list[dict[str, Any]]:
        """Send everything buffered now; the results of this flush.

        Raises UsageBatchError with the events that could not be sent (they stay buffered)."""
        return self._flush(keep=False)

    def _flush(self, *, keep: bool) -> list[dict[str, Any]]:
        """Send everything buffered; `keep`: the answers also go to results()
        (a flush the caller did not ask for: by size, by age, at close)."""
        with self._lock:
            taken, self._buffer, self._oldest = self._buffer, [], None
            self._in_flight += len(taken)
        answered: list[dict[str, Any]] = []
        unsent: list[dict[str, Any]] = []
        cause: UsageError | None = None
        try:
            for start in range(0, len(taken), MAX_BATCH):
                chunk = taken[start:start + MAX_BATCH]
                if cause is not None:  # the service is not answering: keep the rest for later
                    unsent.extend(chunk)
                    continue
                try:
                    results = self._client.send_batch(chunk)
                except UsageError as exc:  # past the client's retries, or refused as a whole
                    cause = exc
                    unsent.extend(chunk)
                    continue
                for event, result in zip(chunk, results, strict=True):
                    if result.get("status") == 503:
                        unsent.append(event)  # not written: sent again later
                    else:
                        answered.append(result)
        except BaseException:
            # Not a service answer (a bug, an interrupt): nothing taken is lost.
            done = {str(r.get("identifier")) for r in answered}
            unsent = [e for e in taken if str(e["identifier"]) not in done]
            raise
        finally:
            with self._lock:
                self._in_flight -= len(taken)
                if keep:
                    self._results.extend(answered)
                if unsent:
                    self._buffer[:0] = unsent  # first in line for the next flush
                    self._oldest = self._oldest or time.monotonic()
        if unsent:
            raise UsageBatchError(f"{len(unsent)} usage events could not be sent yet; they stay buffered"
                                  + (f" ({cause.message})" if cause is not None else ""), list(unsent)) from cause
        return answered

    def results(self) -> list[dict[str, Any]]:
        """The answers of the sends the caller did not ask for (by size, by age,
        at close), one per event, and forgets them: status 202 accepted, 200
        the same event again, 4xx refused with its `error`."""
        with self._lock:
            out, self._results = self._results, []
        return out

    @property
    def pending(self) -> int:
        """Events taken and not answered yet (buffered, or on their way)."""
        with self._lock:
            return len(self._buffer) + self._in_flight

    def close(self) -> list[dict[str, Any]]:
        """Flush and stop; every answer not taken by results() yet.

        Raises UsageBatchError with what could not be sent: the batcher is
        closed, so those events are the caller's to send again."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
        self._stop.set()
        atexit.unregister(self._at_exit)
        try:
            self._flush(keep=True)
        except UsageBatchError:
            with self._lock:
                self._buffer = []  # handed to the caller in the error
            raise
        return self.results()

    def __enter__(self) -> UsageBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in the background -----------------------------------------------------------------

    def _age_flusher(self) -> None:
        tick = min(self._max_age / 2, 0.5)
        while not self._stop.wait(tick):
            with self._lock:
                due = self._oldest is not None and time.monotonic() - self._oldest >= self._max_age
            if not due:
                continue
            try:
                self._flush(keep=True)
            except UsageBatchError as exc:
                with self._lock:
                    self._failure = exc

    def _at_exit(self) -> None:
        try:
            self.close()
        except UsageBatchError as exc:
            for event in exc.unsent:
                sys.stderr.write("billing_usage_client: unsent usage event " + json.dumps(event) + "\n")
            raise
