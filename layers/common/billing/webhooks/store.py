"""The webhook_events rows after the ack: where each event's processing
stands, replay, the re-drive of deferred events, and the operator's views.

Runs. The insert is run 0. A replay or a re-drive adds one to `run` and sets
`run_reason`; the stream's filter passes inserts and exactly those updates,
and every write of the processor removes `run_reason`, so its own outcome
writes never come back to it. Each outcome write is conditional on the run
it processed: if a newer run was requested meanwhile, the write is refused
(Superseded) and the newer run's record does the work.

Statuses: received (waiting for the processor), processed, ignored (a type
we do not project), stale (older than the projection), deferred (its parent
is not here yet; re-driven with backoff), failed (with a sanitized error).
Only failed and deferred rows carry `status_key`, the sparse index's key.
Received rows carry `received_key` (the by_received index, by when the run
was requested) until an outcome is written: a run whose processor died
before recording one (timeout, out of memory, a crash) leaves it there, and
the schedule re-drives it once it has waited `stuck_after` seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from billing.core import clock
from billing.core.errors import NotFound, ValidationFailed
from billing.core.lanes import all_lanes, laned
from billing.core.observability import logger, metrics
from billing.data import pagination
from billing.data.reads import find
from billing.data.tables import WebhookEventRow

RECEIVED, PROCESSED, IGNORED, STALE, DEFERRED, FAILED = (
    "received", "processed", "ignored", "stale", "deferred", "failed")
STATUSES = (RECEIVED, PROCESSED, IGNORED, STALE, DEFERRED, FAILED)
LISTABLE = (FAILED, DEFERRED, RECEIVED)  # by_status holds failed and deferred; by_received, received
FINISHED = (PROCESSED, IGNORED, STALE)

# Finished rows expire after this long: far beyond Stripe's 3 days of
# retries, so a late redelivery still finds its row and is answered duplicate.
FINISHED_TTL_SECONDS = 30 * 24 * 3600
# A deferred event is tried again after 30 s, 1, 2, 4 ... minutes (capped at
# an hour), about 6 hours in all, then it is failed. It is also re-driven at
# once when its parent arrives (redrive_waiting).
MAX_DEFERRALS = 12
DEFER_BASE_SECONDS = 30
DEFER_CAP_SECONDS = 3600
REDRIVE_BATCH = 500


class Superseded(Exception):
    """A newer run of this event was requested (replay, re-drive), or its row is gone."""


def _now() -> int:
    return int(time.time())


def _iso(epoch: float | None) -> str | None:
    return clock.iso(datetime.fromtimestamp(float(epoch), UTC)) if epoch is not None else None


# -- reads --------------------------------------------------------------------------------


def load(event_id: str) -> WebhookEventRow | None:
    return find(WebhookEventRow, event_id)


def to_api(row: WebhookEventRow) -> dict[str, Any]:
    """The event's processing state. Never the raw body: it carries the
    customer's email, name and address, and Stripe keeps the event (by id)."""
    return {
        "id": row.pk, "type": row.type, "created": int(row.created), "livemode": row.livemode,
        "object_id": row.object_id, "status": row.status, "attempts": int(row.attempts or 0),
        "replays": int(row.replays or 0), "error": row.error, "received_at": row.received_at,
        "received_via": row.received_via,
        "updated_at": row.updated_at, "processed_at": row.processed_at,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == DEFERRED else None,
    }


def get(event_id: str) -> dict[str, Any]:
    row = load(event_id)
    if row is None:
        raise NotFound(f"webhook event {event_id} not found")
    return to_api(row)


def list_by_status(status: str, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, from the sparse index (never a scan)."""
    if status not in LISTABLE:
        raise ValidationFailed(f"status must be one of {', '.join(LISTABLE)}", {"status": "not listable"})
    scope = f"webhook_events:{status}"
    if status == RECEIVED:
        rows, next_cursor = pagination.laned_page(WebhookEventRow, WebhookEventRow.by_received, RECEIVED,
                                                  scope=scope, limit=limit, cursor=cursor)
    else:
        rows, next_cursor = pagination.query_page(WebhookEventRow, WebhookEventRow.by_status, status,
                                                  scope=scope, limit=limit, cursor=cursor)
    return [to_api(r) for r in rows], next_cursor


# -- requests for a run -------------------------------------------------------------------


def _conditional_update(event_id: str, actions: list[Action], condition: Any) -> WebhookEventRow | None:
    row = WebhookEventRow(pk=event_id)
    try:
        row.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return row


def replay(event_id: str) -> dict[str, Any]:
    """Run the stored event again, whatever its status (202). The stream
    delivers the update; the processor applies it like a first delivery,
    except that an event already applied is re-fetched instead of skipped."""
    E = WebhookEventRow
    actions: list[Action] = [E.run.add(1), E.replays.add(1), E.run_reason.set("replay"), E.status.set(RECEIVED),
               E.received_key.set(laned(RECEIVED, event_id)),
               E.deferrals.set(0), E.updated_at.set(clock.iso()), E.status_key.remove(), E.error.remove(),
               E.expires_at.remove(), E.next_attempt_at.remove(), E.waiting_for.remove(), E.processed_at.remove()]
    row = _conditional_update(event_id, actions, E.pk.exists())
    if row is None:
        raise NotFound(f"webhook event {event_id} not found")
    logger.info("webhook event replay requested", extra={"event_id": event_id, "run": int(row.run)})
    return to_api(row)


def _redrive(row: WebhookEventRow, status: str = DEFERRED) -> bool:
    """A new run of a row still in `status` at the run it was read at (the
    same run counter and stream filter as a replay)."""
    E = WebhookEventRow
    actions: list[Action] = [E.run.add(1), E.run_reason.set("redrive"), E.updated_at.set(clock.iso())]
    return _conditional_update(row.pk, actions, (E.status == status) & (E.run == row.run)) is not None


def _redrive_where(condition: Any) -> int:
    count = 0
    for row in WebhookEventRow.by_status.query(DEFERRED, filter_condition=condition, limit=REDRIVE_BATCH):
        count += int(_redrive(row))
    return count


def redrive_due() -> int:
    """Re-drive every deferred event whose backoff has elapsed (the schedule)."""
    count = _redrive_where(WebhookEventRow.next_attempt_at <= _now())
    if count:
        logger.info("deferred webhook events re-driven", extra={"count": count})
    return count


def redrive_waiting(parent_id: str) -> int:
    """Re-drive the events deferred for want of `parent_id`, which just arrived."""
    count = _redrive_where(WebhookEventRow.waiting_for == parent_id)
    if count:
        logger.info("deferred webhook events re-driven by their parent", extra={"count": count})
    return count


def redrive_stuck(stuck_after_seconds: float) -> int:
    """Re-drive every row still `received` `stuck_after_seconds` after its run
    was requested (stored, replayed or re-driven): its processor died before
    recording an outcome, and the stream has given the record up or will.
    A row the stream is merely slow to reach is re-driven too: harmless, as
    its older record then finds a newer run and does nothing."""
    # On the clock updated_at is written with (milliseconds), not whole seconds.
    cutoff = clock.iso(clock.now() - timedelta(seconds=stuck_after_seconds))
    E = WebhookEventRow
    count = 0
    for lane in all_lanes():
        for row in E.by_received.query(f"{RECEIVED}#{lane}", E.updated_at <= cutoff, limit=REDRIVE_BATCH):
            count += int(_redrive(row, RECEIVED))
    if count:
        metrics.add_metric(name="WebhooksRedriven", unit=MetricUnit.Count, value=count)
        logger.warning("stuck webhook events re-driven", extra={"count": count,
                                                               "stuck_after_s": stuck_after_seconds})
    return count


# -- outcomes (the processor) -------------------------------------------------------------


def should_run(row: WebhookEventRow, record_run: int) -> bool:
    """Whether a stream record of run `record_run` still has work to do."""
    if int(row.run) != record_run:
        return False  # a newer run was requested; its own record follows
    if row.status in (RECEIVED, FAILED):
        return True  # first delivery, or the stream retrying a failed attempt
    # Deferred: only its re-drive record runs, not a redelivery of the record
    # that deferred it. Finished: a redelivery, nothing to do.
    return row.status == DEFERRED and row.run_reason is not None


def _outcome_actions(status: str) -> list[Action]:
    E = WebhookEventRow
    actions: list[Action] = [E.status.set(status), E.attempts.add(1), E.updated_at.set(clock.iso()),
                             E.run_reason.remove(), E.received_key.remove()]
    if status in FINISHED:
        actions += [E.processed_at.set(clock.iso()), E.expires_at.set(_now() + FINISHED_TTL_SECONDS),
                    E.status_key.remove(), E.error.remove(), E.next_attempt_at.remove(), E.waiting_for.remove()]
    return actions


def add_finish(tw: TransactWrite, row: WebhookEventRow, status: str = PROCESSED) -> None:
    """Mark the event finished in the transaction that applies it."""
    tw.update(WebhookEventRow(pk=row.pk), actions=_outcome_actions(status),
              condition=WebhookEventRow.run == row.run)


def finish(row: WebhookEventRow, status: str) -> None:
    """Mark the event finished without a projection change (ignored, stale, no-op)."""
    if _conditional_update(row.pk, _outcome_actions(status), WebhookEventRow.run == row.run) is None:
        raise Superseded(row.pk)


def fail(row: WebhookEventRow, error: dict[str, Any]) -> None:
    """Record a failed attempt with its sanitized error ({type, code, message})."""
    E = WebhookEventRow
    actions: list[Action] = [*_outcome_actions(FAILED), E.status_key.set(FAILED), E.error.set(error),
               E.next_attempt_at.remove(), E.waiting_for.remove()]
    if _conditional_update(row.pk, actions, E.run == row.run) is None:
        logger.info("failed attempt superseded by a newer run", extra={"event_id": row.pk})


def defer(row: WebhookEventRow, parent_kind: str, parent_id: str, *, error: dict[str, Any] | None = None) -> str:
    """Wait for a missing parent (or, with `error`, for what it says: a
    Stripe key fixed): deferred with backoff, failed after MAX_DEFERRALS."""
    E = WebhookEventRow
    deferrals = int(row.deferrals or 0) + 1
    if deferrals > MAX_DEFERRALS:
        fail(row, error or {"type": "parent_missing", "code": f"{parent_kind}_not_found",
                            "message": f"{parent_kind} {parent_id} was still unknown after {MAX_DEFERRALS} attempts"})
        return FAILED
    delay = min(DEFER_CAP_SECONDS, DEFER_BASE_SECONDS * 2 ** (deferrals - 1))
    actions: list[Action] = [*_outcome_actions(DEFERRED), E.status_key.set(DEFERRED), E.deferrals.set(deferrals),
               E.waiting_for.set(parent_id), E.next_attempt_at.set(_now() + delay),
               E.error.set(error or {"type": "parent_missing", "code": f"{parent_kind}_not_found",
                                     "message": f"waiting for {parent_kind} {parent_id}"})]
    if _conditional_update(row.pk, actions, E.run == row.run) is None:
        raise Superseded(row.pk)
    logger.info("webhook event deferred", extra={"event_id": row.pk, "waiting_for": parent_id,
                                                 "deferrals": deferrals, "retry_in_s": delay})
    return DEFERRED
