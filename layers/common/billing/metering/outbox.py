"""The usage outbox row (meter_events, DESIGN.md section 4, Usage): its
statuses, the index keys it carries in each, its API shape, and the update
actions of its transitions.

The row is its own audit record (DESIGN.md section 2): each transition is
stamped on it (reported_at, failed_at, canceled_at, attempts, sweeps), and
the table's stream carries every version of it; no ledger row is written.

Index layout (template.yaml, MeterEventsTable), chosen for the write budget
of DESIGN.md section 7 (at most 3 write units per event, accepted and
reported, indexes included): the accept is one PutItem (the row, 1 unit, and
its `by_accepted` entry, 1 unit), the report one UpdateItem (1 unit) that
touches no index key and no projected attribute.
- by_accepted (lane, inserted_at): every row, keyed by one of LANES lanes
  picked from the identifier, so one customer's burst spreads over all of
  them and no key takes a write per event of one customer. Projects only
  customer_id and event_name. The lists (pending, reported, customer) and
  the sweeper walk it newest or oldest first and read the rows' status.
- by_status (status_key, updated_at): sparse, off the happy path only:
  failed rows ("failed#<shard>"), and pending rows that left it: retried,
  or found still pending by the sweeper ("pending#<shard>").
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any, Final

from pynamodb.expressions.update import Action

from billing.core.errors import ValidationFailed
from billing.core.lanes import LANES as CORE_LANES
from billing.core.lanes import all_lanes as all_lanes
from billing.core.lanes import lane_of
from billing.data.reads import load as load_row
from billing.data.usage_tables import MeterEventRow
from billing.processor.errors import MAX_MESSAGE_LENGTH

PENDING: Final = "pending"
REPORTED: Final = "reported"
FAILED: Final = "failed"
CANCELED: Final = "canceled"
STATUSES: Final = (PENDING, REPORTED, FAILED, CANCELED)
IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,100}$")


# Stripe's meter event window: at most 35 days old, at most 5 minutes ahead.
PAST_WINDOW_SECONDS: Final = 35 * 24 * 3600
FUTURE_WINDOW_SECONDS: Final = 5 * 60


# Changing either re-keys an index: rows written with another count would
# be invisible to lists until rewritten. Fixed on purpose.
STATUS_SHARDS: Final = 8
# DynamoDB takes 1,000 write units a second per partition key: 16 lanes take
# 16,000 accepted events a second in all, and one customer's 2,000 a second
# puts about 125 on each.
LANES: Final = CORE_LANES


def _hash(identifier: str) -> int:
    return zlib.crc32(identifier.encode())


def shard(identifier: str) -> int:
    return _hash(identifier) % STATUS_SHARDS


def lane(identifier: str) -> str:
    # Its own bits of the hash (billing.core.lanes), so lanes and status shards are independent.
    return lane_of(identifier)


def status_key(status: str, identifier: str) -> str:
    return f"{status}#{shard(identifier)}"


def validate_identifier(identifier: str) -> None:
    if not IDENTIFIER.match(identifier):
        raise ValidationFailed("identifier must be 1 to 100 characters of A-Z, a-z, 0-9, _, -, . and :",
                               {"identifier": "invalid"})


def to_api(row: MeterEventRow) -> dict[str, Any]:
    return {
        "id": row.id, "identifier": row.pk, "customer_id": row.customer_id,
        "stripe_customer_id": row.stripe_customer_id, "event_name": row.event_name, "value": int(row.value),
        "occurred_at": row.occurred_at, "operation_id": row.operation_id, "stripe_status": row.stripe_status,
        "reported_at": row.reported_at, "canceled_at": row.canceled_at, "stripe_error": row.stripe_error,
        "attempts": int(row.attempts or 0), "stripe_identifier": row.stripe_identifier or row.pk,
        "inserted_at": row.inserted_at, "updated_at": row.updated_at,
    }


def load(identifier: str) -> MeterEventRow:
    validate_identifier(identifier)
    return load_row(MeterEventRow, identifier, f"usage event with identifier {identifier}")


def get(identifier: str) -> dict[str, Any]:
    return to_api(load(identifier))


def safe_error(error_type: str, code: str | None, message: str | None) -> dict[str, Any]:
    """The only shape `stripe_error` holds: derived, never a raw payload."""
    text = " ".join(str(message or "").split())
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "\u2026"
    return {"type": error_type, "code": code, "message": text}


def reported_actions(at: str) -> list[Action]:
    # REMOVE of an absent status_key costs nothing: a row that never left the
    # happy path is in no by_status entry, and this update writes no index.
    return [
        MeterEventRow.stripe_status.set(REPORTED), MeterEventRow.status_key.remove(),
        MeterEventRow.reported_at.set(at), MeterEventRow.stripe_error.remove(), MeterEventRow.attempts.add(1),
        MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]


def failed_actions(identifier: str, error: dict[str, Any], at: str, *, count_attempt: bool) -> list[Action]:
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(FAILED), MeterEventRow.status_key.set(status_key(FAILED, identifier)),
        MeterEventRow.stripe_error.set(error), MeterEventRow.failed_at.set(at),
        MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    if count_attempt:
        actions.append(MeterEventRow.attempts.add(1))
    return actions


# A resend's identifier: the row's own, then "#r" and the resend's number.
# "#" is outside the identifiers callers may choose, so a derived one never
# equals a caller's; Stripe takes up to 100 characters.
RESEND_MARK: Final = "#r"
MAX_STRIPE_IDENTIFIER: Final = 100


def resend_identifier(row: MeterEventRow) -> str:
    """A new identifier for an event Stripe rejected after taking it (a meter
    error): Stripe drops an identifier it saw within about 24 hours, and
    replays the first answer to a resent idempotency key, so a resend under
    the old one would be counted reported without being billed."""
    current = row.stripe_identifier or row.pk
    base, _, number = current.partition(RESEND_MARK)
    suffix = f"{RESEND_MARK}{int(number or 0) + 1}"
    if len(base) + len(suffix) > MAX_STRIPE_IDENTIFIER:
        # Too long to carry whole: a digest (a meter error naming it then
        # cannot be traced back to the row; it is logged).
        base = "h" + hashlib.sha256(base.encode()).hexdigest()[:40]
    return base + suffix


def row_identifier(stripe_identifier: str) -> str:
    """The row a Stripe identifier belongs to (its own, or a resend's)."""
    return stripe_identifier.partition(RESEND_MARK)[0]


def maybe_sent_actions(at: str) -> list[Action]:
    """A send whose answer never came may have reached Stripe (the first such
    time is kept). updated_at is left as it was on purpose: a stream record
    whose maybe_sent_at is newer than its updated_at is this stamp's own, and
    the reporter does not deliver it again (the record that failed is being
    retried already). A cancel conditions on the stamp's absence instead of
    the version (billing.metering.cancel)."""
    return [MeterEventRow.maybe_sent_at.set(MeterEventRow.maybe_sent_at | at)]


def maybe_sent(row: MeterEventRow) -> bool:
    """Whether Stripe may hold the row's event (as it now identifies it)."""
    return row.stripe_status == REPORTED or row.maybe_sent_at is not None


def canceled_actions(at: str) -> list[Action]:
    return [
        MeterEventRow.stripe_status.set(CANCELED), MeterEventRow.status_key.remove(),
        MeterEventRow.canceled_at.set(at), MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
