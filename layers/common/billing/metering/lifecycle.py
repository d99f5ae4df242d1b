"""Transitions a caller or Stripe makes on usage rows: retry (failed to
pending) and failure by a Stripe meter error report. Each is one
conditional UpdateItem stamped on the row (its own audit record, DESIGN.md
section 2): no ledger row. The stream image of the failed transition
carries the status and `failed_at`, for whoever publishes `usage.failed`."""

from __future__ import annotations

from typing import Any, Final

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from billing.core import clock
from billing.core.errors import Conflict
from billing.core.observability import logger
from billing.data.conditional import refused
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.transactions import Retry, retry_on_conflict
from billing.data.usage_tables import MeterEventRow
from billing.metering.outbox import (
    CANCELED,
    FAILED,
    PENDING,
    failed_actions,
    load,
    resend_identifier,
    row_identifier,
    safe_error,
    status_key,
    to_api,
)

METER_ERROR: Final = "meter_error"  # stripe_error.type of a row Stripe rejected after taking it


def retry(identifier: str, actor: Actor) -> dict[str, Any]:
    """failed -> pending (the stream delivers it again); any other state is a 409.

    The retried row is flagged in by_status as pending ("pending#<shard>"):
    it is off the happy path, and its acceptance is long behind the sweeper.
    A row Stripe rejected after taking it (a meter error) is resent under a
    new identifier (`stripe_identifier`): Stripe would drop the old one as a
    duplicate. Other failures never reached Stripe's meter (or a person
    checked a stale one): the same identifier goes again.
    """
    row = load(identifier)
    if row.stripe_status != FAILED:
        raise Conflict(f"usage {identifier} is {row.stripe_status}; only failed usage can be retried",
                       {"stripe_status": row.stripe_status})
    at = clock.iso()
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(PENDING), MeterEventRow.status_key.set(status_key(PENDING, identifier)),
        MeterEventRow.reported_at.remove(), MeterEventRow.stripe_error.remove(), MeterEventRow.failed_at.remove(),
        MeterEventRow.pending_since.set(at), MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    if (row.stripe_error or {}).get("type") == METER_ERROR:
        # Stripe bills nothing of the old identifier: the new one was never sent.
        actions += [MeterEventRow.stripe_identifier.set(resend_identifier(row)), MeterEventRow.maybe_sent_at.remove()]
    try:
        row.update(actions=actions, condition=(MeterEventRow.stripe_status == FAILED)
                   & (MeterEventRow.lock_version == row.lock_version))
    except UpdateError as exc:
        if not refused(exc):
            raise
        current = load(identifier)
        raise Conflict(f"usage {identifier} changed concurrently; it is {current.stripe_status}",
                       {"stripe_status": current.stripe_status}) from None
    logger.info("usage retry requested", extra={"identifier": identifier, "customer_id": row.customer_id,
                                                "actor": actor.type})
    return to_api(row)


def fail_from_meter_error(identifier: str, code: str | None, message: str | None, actor: Actor) -> bool:
    """Stripe rejected an accepted event after the fact: the row becomes failed
    (even if it was reported). False when there is no such row, or it is
    already failed, or canceled (Stripe bills a canceled event no more)."""
    error = safe_error(METER_ERROR, code, message)

    def attempt() -> bool:
        row = find(MeterEventRow, row_identifier(identifier))
        if row is not None and (row.stripe_identifier or row.pk) != identifier:
            # About a send the row has since replaced: that one stands.
            logger.info("meter error names an earlier identifier of the row", extra={"identifier": identifier})
            return False
        if row is None:
            logger.warning("meter error names an unknown identifier", extra={"identifier": identifier})
            return False
        if row.stripe_status in (FAILED, CANCELED):
            return False
        # Conditional on the version read: the reporter may move it meanwhile.
        try:
            row.update(actions=failed_actions(row.pk, error, clock.iso(), count_attempt=False),
                       condition=MeterEventRow.lock_version == row.lock_version)
        except UpdateError as exc:
            if refused(exc):
                raise Retry(identifier) from None  # it moved since the read: read again
            raise
        logger.info("usage failed by a meter error report",
                    extra={"identifier": identifier, "previous_status": row.stripe_status, "code": code,
                           "actor": actor.type})
        return True

    return retry_on_conflict(attempt, subject=f"usage {identifier}")
