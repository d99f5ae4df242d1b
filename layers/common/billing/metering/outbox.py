"""The usage outbox row (meter_events, DESIGN.md section 4, Usage): its
statuses, the sparse index keys it carries in each, its API shape, and the
update actions of its transitions.

Index layout (template.yaml, MeterEventsTable):
- by_status (status_key, updated_at): sparse, only pending and failed rows
  carry `status_key`, so the dead-letter view and the sweeper never read the
  reported majority. The key is sharded (`failed#3`) so that a burst of
  accepted events does not funnel every index write into one partition key.
- by_reported (reported_key, reported_at): reported rows, sharded the same way.
- by_customer (customer_id, occurred_sort): one customer's usage, newest first.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Final

from pynamodb.expressions.update import Action

from billing.core.errors import ValidationFailed
from billing.data.reads import load as load_row
from billing.data.tables import MeterEventRow
from billing.processor.errors import MAX_MESSAGE_LENGTH

PENDING: Final = "pending"
REPORTED: Final = "reported"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, REPORTED, FAILED)
IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,100}$")


# Stripe's meter event window: at most 35 days old, at most 5 minutes ahead.
PAST_WINDOW_SECONDS: Final = 35 * 24 * 3600
FUTURE_WINDOW_SECONDS: Final = 5 * 60


# Changing this re-keys the status indexes: rows written with another shard
# count would be invisible to lists until rewritten. Fixed on purpose.
STATUS_SHARDS: Final = 8
MAX_TRANSACTION_ITEMS: Final = 100


def shard(identifier: str) -> int:
    return zlib.crc32(identifier.encode()) % STATUS_SHARDS


def status_key(status: str, identifier: str) -> str:
    return f"{status}#{shard(identifier)}"


def reported_key(identifier: str) -> str:
    return f"{REPORTED}#{shard(identifier)}"


def validate_identifier(identifier: str) -> None:
    if not IDENTIFIER.match(identifier):
        raise ValidationFailed("identifier must be 1 to 100 characters of A-Z, a-z, 0-9, _, -, . and :",
                               {"identifier": "invalid"})


def to_api(row: MeterEventRow) -> dict[str, Any]:
    return {
        "id": row.id, "identifier": row.pk, "customer_id": row.customer_id,
        "stripe_customer_id": row.stripe_customer_id, "event_name": row.event_name, "value": int(row.value),
        "occurred_at": row.occurred_at, "operation_id": row.operation_id, "stripe_status": row.stripe_status,
        "reported_at": row.reported_at, "stripe_error": row.stripe_error, "attempts": int(row.attempts or 0),
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


def reported_actions(identifier: str, at: str) -> list[Action]:
    return [
        MeterEventRow.stripe_status.set(REPORTED), MeterEventRow.status_key.remove(),
        MeterEventRow.reported_key.set(reported_key(identifier)), MeterEventRow.reported_at.set(at),
        MeterEventRow.stripe_error.remove(), MeterEventRow.attempts.add(1), MeterEventRow.updated_at.set(at),
        MeterEventRow.lock_version.add(1),
    ]


def failed_actions(identifier: str, error: dict[str, Any], at: str, *, count_attempt: bool) -> list[Action]:
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(FAILED), MeterEventRow.status_key.set(status_key(FAILED, identifier)),
        MeterEventRow.reported_key.remove(), MeterEventRow.stripe_error.set(error),
        MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    if count_attempt:
        actions.append(MeterEventRow.attempts.add(1))
    return actions
