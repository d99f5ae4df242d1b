"""One stream record of webhook_events in, the event's outcome out.

The record only says which event and which run; the row (read consistently)
says whether there is still work to do (store.should_run) and holds the raw
body. The body's type picks a handler from HANDLERS; a type without one is
`ignored`. A handler reconciles `data.object` against its projection row:

- created strictly older than the row's watermark (last_stripe_event_ts):
  `stale`, nothing changes;
- strictly newer (or no watermark): `data.object` is applied as canonical
  state, with no required-field checks, so partial and out-of-order state
  settles;
- the same second: Stripe's order within a second is unknown, so the object
  is re-fetched from the processor and that is applied.

Projection row (with its new watermark), ledger row (actor webhook,
caused_by_webhook_event_id) and this event's `processed` mark commit in one
TransactWriteItems (Context.transaction). A lock conflict re-reads and
tries again. A missing parent raises Deferred; a payload that cannot be
applied raises Malformed (failed, not retried: it would fail the same way);
anything else is recorded as a failed attempt and re-raised, so the batch
reports the record and the stream retries it, then sends it on to the
on-failure destination.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.errors import DomainError
from billing.ledger import Actor
from billing.observability import logger
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.tables import WebhookEventRow, connection
from billing.webhooks import store

METER_ERROR_TYPES = ("v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found")


class Deferred(Exception):
    """The event's parent (a customer) is not in the projection yet."""

    def __init__(self, parent_kind: str, parent_id: str) -> None:
        super().__init__(f"{parent_kind} {parent_id} not found")
        self.parent_kind = parent_kind
        self.parent_id = parent_id


class Malformed(Exception):
    """The event cannot be applied as it is: retrying would fail the same way.
    The message is ours (it names fields, never their values)."""

    def __init__(self, message: str, code: str = "malformed_event") -> None:
        super().__init__(message)
        self.code = code

    def to_error(self) -> dict[str, Any]:
        return {"type": "bad_request", "code": self.code, "message": str(self)[:512]}


def order(created: int, watermark: float | None) -> int:
    """1 if the event is newer than the watermark (or there is none), 0 same second, -1 older."""
    if watermark is None:
        return 1
    return (created > watermark) - (created < watermark)


@dataclass
class Context:
    """One event being applied: its row (as read), its parsed body, its actor."""

    row: WebhookEventRow
    event: dict[str, Any]
    refetched: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.row.pk)

    @property
    def type(self) -> str:
        return str(self.row.type)

    @property
    def created(self) -> int:
        return int(self.row.created)

    @property
    def replay(self) -> bool:
        return self.row.run_reason == "replay"

    @property
    def actor(self) -> Actor:
        return Actor.webhook(self.id)

    def object(self) -> dict[str, Any]:
        """`data.object`, with a string id (the ack path checked the shape of a
        present one; an event of a projected type must have one)."""
        data = self.event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
            raise Malformed(f"{self.type} needs data.object with an id")
        return obj

    def already_applied(self, last_event_id: str | None) -> bool:
        """This very event set the watermark already (a redelivery); a replay re-applies."""
        return last_event_id == self.id and not self.replay

    def refetch(self, object_type: str, object_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
        """The processor's current object (for an event in the watermark's second),
        fetched once per event even when a lock conflict makes us re-read."""
        if (object_type, object_id) in self.refetched:
            return self.refetched[(object_type, object_id)]
        try:
            found = get_processor().retrieve_object(object_type, object_id)
        except ProcessorFailure as failure:
            if failure.code == "resource_missing":
                # Gone at the processor (e.g. a deleted coupon): the event's
                # own object is the last state there will ever be.
                return fallback
            raise
        logger.info("same-second event: object re-fetched",
                    extra={"event_id": self.id, "object_type": object_type, "object_id": object_id})
        self.refetched[(object_type, object_id)] = found
        return found

    def finish(self, status: str) -> str:
        store.finish(self.row, status)
        return status

    @contextmanager
    def transaction(self) -> Iterator[TransactWrite]:
        """A TransactWrite that also marks this event processed, on condition
        that no newer run was requested since it was read."""
        try:
            with TransactWrite(connection=connection()) as tw:
                store.add_finish(tw, self.row)
                yield tw
        except TransactWriteError:
            # Cancellation reasons follow PynamoDB's item order (checks,
            # deletes, puts, updates), not the order items were added, so
            # which condition failed is read back rather than guessed: a newer
            # run means this one is superseded; otherwise the projection lost
            # a race and the caller re-reads and retries.
            current = store.load(self.id)
            if current is None or current.run != self.row.run:
                raise store.Superseded(self.id) from None
            raise


Handler = Callable[[Context], str]


def _meter_error(ctx: Context) -> str:
    """Thin meter error events: billing.meter_errors (the metering side) moves
    the failed identifiers' rows to failed. Loaded on use, and optional: until
    it is installed these events fail with a clear error, kept for replay."""
    try:
        module = importlib.import_module("billing.meter_errors")
    except ModuleNotFoundError as exc:
        if exc.name != "billing.meter_errors":
            raise
        raise Malformed("meter error handling not installed", code="not_installed") from None
    handle: Callable[[str, str, Actor], int] = module.handle_meter_error_event
    moved = handle(ctx.id, ctx.type, ctx.actor)
    logger.info("meter error event handled", extra={"event_id": ctx.id, "rows_failed": moved})
    return ctx.finish(store.PROCESSED)


def handlers() -> dict[str, Handler]:
    from billing.webhooks import customers, objects

    table: dict[str, Handler] = dict.fromkeys(customers.EVENT_TYPES, customers.apply)
    table.update(objects.handlers())
    table.update(dict.fromkeys(METER_ERROR_TYPES, _meter_error))
    return table


HANDLERS: dict[str, Handler] = {}


def _handler(event_type: str) -> Handler | None:
    if not HANDLERS:
        HANDLERS.update(handlers())
    return HANDLERS.get(event_type)


def safe_error(exc: Exception) -> dict[str, Any]:
    """What a failed row may say about an exception: {type, code, message<=512},
    from fields we control, never a payload."""
    if isinstance(exc, ProcessorFailure):
        return exc.to_safe_dict()
    if isinstance(exc, DomainError):
        return {"type": exc.error_type, "code": None, "message": exc.message[:512]}
    return {"type": "internal_error", "code": type(exc).__name__,
            "message": "the event could not be applied; it will be retried (see the function log)"}


def process(event_id: str, record_run: int) -> str | None:
    """Apply one event; the outcome status, or None if there was nothing to do."""
    row = store.load(event_id)
    if row is None or not store.should_run(row, record_run):
        logger.info("stream record has nothing to do", extra={"event_id": event_id, "run": record_run})
        return None
    try:
        try:
            event = json.loads(row.body)
        except ValueError:
            raise Malformed("the stored body is not JSON") from None
        if not isinstance(event, dict):
            raise Malformed("the stored body is not a JSON object")
        handler = _handler(row.type)
        if handler is None:
            store.finish(row, store.IGNORED)
            outcome = store.IGNORED
        else:
            outcome = handler(Context(row, event))
    except store.Superseded:
        logger.info("a newer run of this event was requested", extra={"event_id": event_id})
        return None
    except Deferred as missing:
        try:
            outcome = store.defer(row, missing.parent_kind, missing.parent_id)
        except store.Superseded:
            return None
    except Malformed as bad:
        store.fail(row, bad.to_error())
        logger.warning("webhook event cannot be applied", extra={"event_id": event_id, "event_type": row.type,
                                                                  "code": bad.code})
        return store.FAILED
    except Exception as exc:
        # Recorded first (the row says failed, with a safe error), then raised
        # so the stream retries the record and finally dead-letters it.
        store.fail(row, safe_error(exc))
        logger.exception("webhook event failed", extra={"event_id": event_id, "event_type": row.type,
                                                        "error_type": type(exc).__name__})
        raise
    logger.info("webhook event reconciled", extra={"event_id": event_id, "event_type": row.type,
                                                   "status": outcome})
    return outcome
