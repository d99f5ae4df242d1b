"""Transitions a caller or a schedule makes on usage rows: retry (failed to
pending), failure by a Stripe meter error report, and the sweep that
re-drives rows left pending."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from billing.core import clock, settings
from billing.core.errors import Conflict
from billing.core.observability import logger, metrics
from billing.data import ledger
from billing.data.cancellation import condition_failed
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import MeterEventRow, connection
from billing.data.transactions import retry_on_conflict
from billing.metering.outbox import (
    FAILED,
    PENDING,
    STATUS_SHARDS,
    failed_actions,
    get,
    load,
    safe_error,
    status_key,
)


def retry(identifier: str, actor: Actor) -> dict[str, Any]:
    """failed -> pending (the stream delivers it again); any other state is a 409."""
    row = load(identifier)
    if row.stripe_status != FAILED:
        raise Conflict(f"usage {identifier} is {row.stripe_status}; only failed usage can be retried",
                       {"stripe_status": row.stripe_status})
    at = clock.iso()
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(PENDING), MeterEventRow.status_key.set(status_key(PENDING, identifier)),
        MeterEventRow.reported_key.remove(), MeterEventRow.reported_at.remove(), MeterEventRow.stripe_error.remove(),
        MeterEventRow.pending_since.set(at), MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.update(MeterEventRow(pk=identifier), actions=actions,
                      condition=(MeterEventRow.stripe_status == FAILED)
                      & (MeterEventRow.lock_version == row.lock_version))
            ledger.append(tw, type_="usage.retry_requested", subject_type="customer", subject_id=row.customer_id,
                          actor=actor, data={"identifier": identifier, "previous_error": row.stripe_error,
                                             "previous_reported_at": row.reported_at})
    except TransactWriteError as exc:
        if not condition_failed(exc):
            raise
        current = load(identifier)
        raise Conflict(f"usage {identifier} changed concurrently; it is {current.stripe_status}",
                       {"stripe_status": current.stripe_status}) from None
    logger.info("usage retry requested", extra={"identifier": identifier, "customer_id": row.customer_id})
    return get(identifier)


def fail_from_meter_error(identifier: str, code: str | None, message: str | None, actor: Actor) -> bool:
    """Stripe rejected an accepted event after the fact: the row becomes failed
    (even if it was reported). False when there is no such row or it already is failed."""
    error = safe_error("meter_error", code, message)

    def attempt() -> bool:
        row = find(MeterEventRow, identifier)
        if row is None:
            logger.warning("meter error names an unknown identifier", extra={"identifier": identifier})
            return False
        if row.stripe_status == FAILED:
            return False
        # Conditional on the version read: the reporter may move it meanwhile.
        with TransactWrite(connection=connection()) as tw:
            tw.update(MeterEventRow(pk=identifier),
                      actions=failed_actions(identifier, error, clock.iso(), count_attempt=False),
                      condition=MeterEventRow.lock_version == row.lock_version)
            ledger.append(tw, type_="usage.failed", subject_type="customer", subject_id=row.customer_id,
                          actor=actor, data={"identifier": identifier, "previous_status": row.stripe_status,
                                             "stripe_error": error})
        logger.info("usage failed by a meter error report",
                    extra={"identifier": identifier, "previous_status": row.stripe_status, "code": code})
        return True

    return retry_on_conflict(attempt, subject=f"usage {identifier}")


def sweep(*, min_age_seconds: float, max_rows: int) -> dict[str, int]:
    """Touch rows pending for longer than `min_age_seconds` (at most `max_rows`),
    oldest first, so the stream delivers them again.

    The touch keeps the row pending and bumps `sweeps`; it is conditional on
    the row not having moved since it was read, so a row the reporter has
    just reported is left alone.
    """
    cutoff = clock.iso(datetime.fromtimestamp(time.time() - min_age_seconds, UTC))
    per_shard = max(1, math.ceil(max_rows / STATUS_SHARDS))
    scanned = touched = 0
    for n in range(STATUS_SHARDS):
        budget = min(per_shard, max_rows - scanned)
        if budget <= 0:
            break
        rows = list(MeterEventRow.by_status.query(f"{PENDING}#{n}", MeterEventRow.updated_at < cutoff,
                                                  scan_index_forward=True, limit=budget, page_size=budget))
        for row in rows:
            scanned += 1
            at = clock.iso()
            try:
                row.update(actions=[MeterEventRow.sweeps.add(1), MeterEventRow.updated_at.set(at),
                                    MeterEventRow.lock_version.add(1)],
                           condition=(MeterEventRow.stripe_status == PENDING)
                           & (MeterEventRow.updated_at == row.updated_at))
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                continue
            touched += 1
    if touched:
        logger.info("pending usage re-driven", extra={"touched": touched, "scanned": scanned})
    return {"scanned": scanned, "touched": touched}


def sweep_from_env() -> dict[str, int]:
    """sweep() with the age and bound the template gives the sweeper."""
    knobs = settings.load(settings.SweepSettings)
    result = sweep(min_age_seconds=knobs.sweep_min_age_seconds, max_rows=knobs.sweep_max_rows)
    if result["touched"]:
        metrics.add_metric(name="UsageSwept", unit=MetricUnit.Count, value=result["touched"])
    return result
