"""One stream record of webhook_events in, the event's outcome out.

The record only says which event and which run; the row (read consistently)
says whether there is still work to do (store.should_run) and holds the raw
body. The body's type picks a handler from HANDLERS; a type without one is
`ignored`. A thin event (no `data`) of a projected type is applied as its
snapshot type with the object fetched from the processor (thin.py). A
handler reconciles `data.object` against its projection row:

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

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from billing.core import clock
from billing.core.errors import DomainError
from billing.core.observability import logger, metrics
from billing.data.tables import WebhookEventRow
from billing.metering.meter_errors import METER_ERROR_EVENT_TYPES, handle_meter_error_event
from billing.processor.errors import ProcessorFailure, is_systemic
from billing.webhooks import checkout, customers, objects, store, thin
from billing.webhooks.context import Context, Deferred, Handler, Malformed


def _meter_error(ctx: Context) -> str:
    """Thin meter error events: the metering side moves the failed
    identifiers' rows to failed."""
    moved = handle_meter_error_event(ctx.id, ctx.type, ctx.actor)
    logger.info("meter error event handled", extra={"event_id": ctx.id, "rows_failed": moved})
    return ctx.finish(store.PROCESSED)


def handlers() -> dict[str, Handler]:
    table: dict[str, Handler] = dict.fromkeys(customers.EVENT_TYPES, customers.apply)
    table.update(objects.handlers())
    table.update(dict.fromkeys(checkout.EVENT_TYPES, checkout.apply))
    table.update(dict.fromkeys(METER_ERROR_EVENT_TYPES, _meter_error))
    return table


HANDLERS: dict[str, Handler] = {}


def _handler(event_type: str) -> Handler | None:
    if not HANDLERS:
        HANDLERS.update(handlers())
    return HANDLERS.get(event_type)


def handles(event_type: str) -> bool:
    """Whether an event of this type changes anything here (else it is `ignored`)."""
    return _handler(event_type) is not None or _handler(thin.snapshot_type(event_type)) is not None


def safe_error(exc: Exception) -> dict[str, Any]:
    """What a failed row may say about an exception: {type, code, message<=512},
    from fields we control, never a payload."""
    if isinstance(exc, ProcessorFailure):
        return exc.to_safe_dict()
    if isinstance(exc, DomainError):
        return {"type": exc.error_type, "code": None, "message": exc.message[:512]}
    return {"type": "internal_error", "code": type(exc).__name__,
            "message": "the event could not be applied; it will be retried (see the function log)"}


def _prepare(row: WebhookEventRow, event: dict[str, Any]) -> tuple[Handler | None, Context | None]:
    """The handler and the context an event is applied with. A thin event of
    a projected type is applied as its snapshot type, with the object it is
    about fetched from the processor (billing.webhooks.thin); one of a type
    nobody projects is ignored without a fetch."""
    event_type = str(row.type)
    if event_type in METER_ERROR_EVENT_TYPES or not thin.is_thin(event):
        handler = _handler(event_type)
        return handler, (Context(row, event) if handler is not None else None)
    applied_as = thin.snapshot_type(event_type)
    handler = _handler(applied_as)
    if handler is None:
        return None, None
    snapshot, obj = thin.hydrate(str(row.pk), event, applied_as)
    ctx = Context(row, snapshot, applied_as=applied_as)
    # Already Stripe's current state: a same-second event need not fetch it again.
    ctx.refetched[(str(obj.get("object")), str(obj.get("id")))] = obj
    return handler, ctx


def _measure(row: WebhookEventRow, outcome: str) -> None:
    """The webhook flow's metrics (the dashboard and the lag alarm read them):
    finished and failed counts, and for a first run the lag from receipt to
    its outcome. A replay's age is not lag, so it is not measured."""
    if outcome == store.FAILED:
        metrics.add_metric(name="WebhookFailed", unit=MetricUnit.Count, value=1)
    elif outcome in store.FINISHED:
        metrics.add_metric(name="WebhookProcessed", unit=MetricUnit.Count, value=1)
        if not int(row.replays or 0):
            lag = (clock.now() - datetime.fromisoformat(row.received_at)).total_seconds()
            metrics.add_metric(name="WebhookProcessingLag", unit=MetricUnit.Seconds, value=max(0.0, lag))


def _fail(row: WebhookEventRow, exc: Exception) -> None:
    """Recorded first (the row says failed, with a safe error); the caller
    re-raises so the stream retries the record and finally dead-letters it."""
    store.fail(row, safe_error(exc))
    _measure(row, store.FAILED)
    logger.exception("webhook event failed", extra={"event_id": row.pk, "event_type": row.type,
                                                    "error_type": type(exc).__name__})


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
        handler, ctx = _prepare(row, event)
        if handler is None or ctx is None:
            store.finish(row, store.IGNORED)
            outcome = store.IGNORED
        else:
            outcome = handler(ctx)
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
        _measure(row, store.FAILED)
        return store.FAILED
    except ProcessorFailure as failure:
        if not is_systemic(failure):
            _fail(row, failure)
            raise
        # The deployment's Stripe key was refused (401/403): the event is not
        # at fault. It waits (deferred, re-driven on schedule) for the key to
        # be fixed instead of failing after the stream's few quick retries.
        metrics.add_metric(name="StripeAuthFailures", unit=MetricUnit.Count, value=1)
        logger.error("Stripe refused the API key; webhook event deferred until it is fixed",
                     extra={"event_id": event_id, "event_type": row.type, "status": failure.status})
        try:
            outcome = store.defer(row, "stripe_key", "stripe_api_key", error=failure.to_safe_dict())
        except store.Superseded:
            return None
    except Exception as exc:
        _fail(row, exc)
        raise
    logger.info("webhook event reconciled", extra={"event_id": event_id, "event_type": row.type,
                                                   "status": outcome})
    _measure(row, outcome)
    return outcome
