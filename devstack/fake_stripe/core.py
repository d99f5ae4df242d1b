"""The Fake's state and the machinery every call goes through.

FakeCore holds what the Fake knows (objects, counters, calls, faults, saved
idempotency keys, meter events) under one lock, and runs every interface call
the same way (`_run`): record it, meet a scripted fault, honour its
idempotency key, answer a deep copy. The resource mixins (customers.py,
payment_methods.py, meters.py, promotions.py) build on it, and processor.py
puts them together as FakeProcessor.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, cast

from billing.processor.base import JSONDict
from billing.processor.errors import API_ERROR, INVALID_REQUEST, RATE_LIMIT, ProcessorFailure
from devstack.fake_stripe.events import EventLog, event
from devstack.fake_stripe.faults import SLOW, FaultQueue, ProcessCrash, failure_for
from devstack.fake_stripe.idempotency import IdempotencyKeys, mismatch_message
from devstack.fake_stripe.shapes import SHAPES

ADDRESS_KEYS: Final = ("city", "country", "line1", "line2", "postal_code", "state")


def type_for_status(status: int) -> str:
    """Stripe's error type for an HTTP status."""
    if status == 402:
        return "card_error"
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return RATE_LIMIT
    if status >= 500:
        return API_ERROR
    return INVALID_REQUEST


def shape(name: str) -> JSONDict:
    """A fresh copy of one of Stripe's object shapes (shapes.json)."""
    return copy.deepcopy(SHAPES[name])


class FakeCore:
    """State, lock and call machinery of the Fake. Thread-safe; every result is a deep copy."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._init_state()

    def _init_state(self) -> None:
        self._counters: dict[str, int] = {}
        self._customers: dict[str, JSONDict] = {}
        self._deleted_customers: set[str] = set()
        self._payment_methods: dict[str, JSONDict] = {}
        # Detached payment methods can never be attached again (Stripe).
        self._spent_payment_methods: set[str] = set()
        self._coupons: dict[str, JSONDict] = {}
        self._promotion_codes: dict[str, JSONDict] = {}
        self._other_objects: dict[tuple[str, str], JSONDict] = {}
        self._idempotency = IdempotencyKeys()
        self._faults = FaultQueue()
        self._calls: list[JSONDict] = []
        # identifier -> {"api": "v1"|"v2", "event": billing.meter_event}, in arrival order
        self._meter_events: dict[str, JSONDict] = {}
        self._meter_duplicates: dict[str, int] = {}
        self._sessions: dict[str, float] = {}  # authentication_token -> expires at (unix)
        self._v2_events: dict[str, JSONDict] = {}
        self._meters: dict[str, str] = {}  # event_name -> meter id
        # The Stripe events its changes cause, in order (events.py), and the
        # request making them (its id and idempotency key go on each event).
        self._events = EventLog() if not hasattr(self, "_events") else self._reset_events()
        self._request: JSONDict | None = None
        # How far the test clock (test_clock.py) moved billing time past the wall clock.
        self._billing_offset = 0.0
        self._meter_adjustments: dict[str, JSONDict] = {}  # identifier -> {"canceled_at"} (meter_adjustments.py)
        # Accepted events Stripe later found invalid (meter errors): never aggregated.
        self._meter_rejected: set[str] = set()
        # Events received again after their identifier's dedupe window: Stripe counts them again.
        self._meter_recounted: list[JSONDict] = []

    # -- the machinery every call goes through -----------------------------------------

    def _run(
        self,
        operation: str,
        args: JSONDict,
        execute: Callable[[], JSONDict],
        *,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        with self._lock:
            entry: JSONDict = {"operation": operation, "args": copy.deepcopy(args)}
            if idempotency_key is not None:
                entry["idempotency_key"] = idempotency_key
            self._calls.append(entry)
            fault = self._faults.take(operation)
        if fault is not None and fault.delay and not fault.after:
            self._faults.wait(fault.delay)  # a slow Stripe: the call runs late, other calls meanwhile
            if fault.status == SLOW:
                fault = None
        with self._lock:
            self._request = {"id": self._next_id("req_fake"), "idempotency_key": idempotency_key}
            try:
                if fault is not None and not fault.after:
                    raise failure_for(fault, self._error)
                result = self._idempotency.run(
                    operation, args, idempotency_key, execute, mismatch=self._idempotency_error
                )
                if fault is not None and fault.crash:
                    entry["error"] = {"crash": True}
                    raise ProcessCrash(operation)
                if fault is not None and fault.status != SLOW:
                    raise failure_for(fault, self._error)
            except ProcessorFailure as failure:
                entry["error"] = {"status": failure.status, **failure.to_safe_dict()}
                raise
            finally:
                self._request = None
            answer = copy.deepcopy(result)
        if fault is not None and fault.delay:
            self._faults.wait(fault.delay)  # the call took effect; its answer comes late
        return answer

    # -- helpers ----------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _billing_now(self) -> int:
        """Billing time: the wall clock moved on by the test clock (periods,
        trials, invoices). Meter windows and sessions keep the wall clock."""
        return int(self._clock() + self._billing_offset)

    def _reset_events(self) -> EventLog:
        """A reset forgets the events too, but keeps whoever listens for them."""
        log = EventLog()
        log.on_append = self._events.on_append
        return log

    def _emit(self, type_: str, obj: JSONDict, previous: JSONDict | None = None) -> JSONDict:
        """Record the event a change causes, as Stripe sends it (events.py)."""
        recorded = event(self._next_id("evt_fake"), type_, obj, int(self._clock()), previous=previous,
                         request=self._request)
        self._events.append(recorded)
        return recorded

    def _next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}_{self._counters[prefix]:05d}"

    def _error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> ProcessorFailure:
        return ProcessorFailure(
            message,
            status=status,
            error_type=error_type or type_for_status(status),
            code=code,
            param=param,
            request_id=self._next_id("req_fake"),
        )

    def _missing(self, object_type: str, object_id: str) -> ProcessorFailure:
        # A missing object named in the URL path is a 404 on Stripe.
        label = {"payment_method": "PaymentMethod", "promotion_code": "promotion code"}.get(object_type, object_type)
        return self._error(404, f"No such {label}: '{object_id}'", code="resource_missing", param="id")

    def _idempotency_error(self, key: str) -> ProcessorFailure:
        return self._error(400, mismatch_message(key), error_type="idempotency_error")

    def _check_metadata(self, metadata: object) -> None:
        """Stripe's metadata limits: 50 keys, key <= 40 chars, value <= 500 chars, no brackets."""
        if not isinstance(metadata, dict):
            raise self._error(400, "Invalid metadata: must be an object.", param="metadata")
        if len(metadata) > 50:
            raise self._error(400, "Metadata can have at most 50 keys.", param="metadata")
        for key, value in metadata.items():
            if not isinstance(key, str) or not key or len(key) > 40 or "[" in key or "]" in key:
                raise self._error(400, f"Invalid metadata key: {str(key)[:40]}", param="metadata")
            if value is not None and (not isinstance(value, str | int | float) or len(str(value)) > 500):
                raise self._error(400, f"Invalid value for metadata[{key}].", param=f"metadata[{key}]")

    def _merge_metadata(self, current: dict[str, str], change: object) -> dict[str, str]:
        if change in ("", None):
            return {}  # Stripe: metadata="" clears every key
        self._check_metadata(change)
        change = cast(dict[str, object], change)  # checked above
        merged = dict(current)
        for key, value in change.items():
            if value in ("", None):
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return merged

    def _check_known(self, params: object, allowed: Iterable[str], *, prefix: str = "") -> None:
        if not isinstance(params, dict):
            raise self._error(400, "Invalid parameters: must be an object.")
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            name = f"{prefix}[{unknown[0]}]" if prefix else unknown[0]
            raise self._error(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
