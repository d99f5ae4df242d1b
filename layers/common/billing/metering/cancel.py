"""Canceling a usage event (POST /v1/usage/{identifier}/cancel).

- pending (or failed) and never possibly sent: Stripe never billed it. One conditional UpdateItem
  (on the status read, and the version) makes it canceled, so the reporter,
  whose own write is conditional on pending and which reads the row again
  right before every send, never sends it afterwards. If a send was already
  on its way, the reporter cancels the event at Stripe when it sees the
  row canceled (billing.metering.delivery).
- reported, or pending/failed after a send whose answer was lost
  (`maybe_sent_at`: it may have reached Stripe): canceled at Stripe first,
  with a meter event adjustment
  (`type: cancel`, by identifier, idempotency key from the identifier, so a
  retried cancel makes one adjustment), then the row. Stripe takes that
  within 24 hours of receiving the event only: the row's reported_at is the
  latest Stripe can have received it, so past CANCEL_WINDOW_SECONDS after
  it the answer is 409 `cancel_window_passed`, without a call.
- canceled: answered as it is (a repeated cancel changes nothing).

Each is stamped on the row (status canceled, canceled_at); no ledger row.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import UpdateError

from billing.core import clock
from billing.core.errors import Conflict
from billing.core.observability import logger, metrics
from billing.data.conditional import refused
from billing.data.ledger import Actor
from billing.data.transactions import Retry, retry_on_conflict
from billing.data.usage_tables import MeterEventRow
from billing.metering import outbox
from billing.metering.outbox import CANCELED, FAILED, PENDING, REPORTED, canceled_actions, load, to_api
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

# Stripe cancels an event within 24 hours of receiving it. A few minutes are
# kept in hand for the time between Stripe's receipt and our reported_at
# stamp, and for clocks: past this the cancel is refused without a call.
CANCEL_WINDOW_SECONDS: Final = 24 * 3600 - 5 * 60
COMPENSATION_TRIES: Final = 3


def idempotency_key(identifier: str) -> str:
    return f"usage-cancel:{identifier}"


def _window_passed(reported_at: str | None, now: float) -> bool:
    if not reported_at:
        return False
    return now - datetime.fromisoformat(reported_at).timestamp() > CANCEL_WINDOW_SECONDS


def cancel(identifier: str, actor: Actor) -> dict[str, Any]:
    """Cancel a usage event; returns the row (status canceled)."""

    def attempt() -> dict[str, Any]:
        row = load(identifier)
        if row.stripe_status == CANCELED:
            return to_api(row)
        if outbox.maybe_sent(row):
            sent_at = row.reported_at or row.maybe_sent_at
            if _window_passed(sent_at, time.time()):
                raise Conflict(f"usage {identifier} was sent to Stripe more than 24 hours ago; Stripe no longer "
                               "cancels it", {"reported_at": row.reported_at}, type_="cancel_window_passed")
            # By the identifier Stripe holds it under (a retried rejection's own).
            sent_as = row.stripe_identifier or identifier
            try:
                get_processor().cancel_meter_event(event_name=row.event_name, identifier=sent_as,
                                                   idempotency_key=idempotency_key(sent_as))
            except ProcessorFailure as failure:
                raise_for_processor(failure)
        if row.stripe_status not in (PENDING, FAILED, REPORTED):
            raise Conflict(f"usage {identifier} is {row.stripe_status}", {"stripe_status": row.stripe_status})
        previous = row.stripe_status
        try:
            # Not stamped maybe-sent since the read either (that stamp keeps
            # the version): otherwise decide again, and cancel it at Stripe.
            unsent = MeterEventRow.maybe_sent_at.exists() if row.maybe_sent_at else \
                MeterEventRow.maybe_sent_at.does_not_exist()
            row.update(actions=canceled_actions(clock.iso()),
                       condition=(MeterEventRow.stripe_status == row.stripe_status)
                       & (MeterEventRow.lock_version == row.lock_version) & unsent)
        except UpdateError as exc:
            if refused(exc):
                # It moved since the read (reported, failed, swept): decide again.
                raise Retry(identifier) from None
            raise
        metrics.add_metric(name="UsageCanceled", unit=MetricUnit.Count, value=1)
        logger.info("usage canceled", extra={"identifier": identifier, "customer_id": row.customer_id,
                                             "previous_status": previous, "actor": actor.type})
        return to_api(row)

    return retry_on_conflict(attempt, subject=f"usage {identifier}")


def cancel_at_stripe(identifier: str, event_name: str, *, raced: bool, sent_as: str | None = None) -> bool:
    """Cancel at Stripe an event whose row is canceled (the reporter's
    compensation when a cancel raced a send). True once Stripe took it; a
    failure is logged, counted and stamped on the row for a person to check."""
    failure = ProcessorFailure("not tried")
    for _ in range(COMPENSATION_TRIES):
        try:
            get_processor().cancel_meter_event(event_name=event_name, identifier=sent_as or identifier,
                                               idempotency_key=idempotency_key(sent_as or identifier))
        except ProcessorFailure as exc:
            failure = exc
            if not exc.transient:
                break
            continue
        metrics.add_metric(name="UsageCancelRaced", unit=MetricUnit.Count, value=1)
        logger.info("canceled at Stripe an event sent while it was being canceled",
                    extra={"identifier": identifier, "raced": raced})
        return True
    error = outbox.safe_error("cancel_adjustment_failed", failure.code, failure.message)
    metrics.add_metric(name="UsageCancelAdjustmentFailed", unit=MetricUnit.Count, value=1)
    logger.error("a canceled event may still be billed by Stripe; see its stripe_error",
                 extra={"identifier": identifier, "error": error})
    try:
        MeterEventRow(pk=identifier).update(actions=[MeterEventRow.stripe_error.set(error)],
                                            condition=MeterEventRow.stripe_status == CANCELED)
    except UpdateError as exc:
        if not refused(exc):
            raise
    return False


def compensate(sent: list[tuple[str, str, str]]) -> None:
    """(identifier, event_name, identifier sent as) of rows whose event went
    out to Stripe and whose outcome was not recorded: those that turned out
    canceled (the cancel came while the call was on its way) are canceled at
    Stripe too (the reporter, billing.metering.delivery)."""
    if not sent:
        return
    rows = {r.pk: r for r in MeterEventRow.batch_get([i for i, _, _ in sent], consistent_read=True,
                                                      attributes_to_get=["pk", "stripe_status"])}
    for identifier, event_name, sent_as in sent:
        row = rows.get(identifier)
        if row is not None and row.stripe_status == CANCELED:
            cancel_at_stripe(identifier, event_name, raced=True, sent_as=sent_as)
