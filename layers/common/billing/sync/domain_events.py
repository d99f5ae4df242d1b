"""What goes on the domain event bus: one event per ledger row, and one per
usage event that ends failed (DESIGN.md section 8; schemas/events/).

Every event has `source` billing-functions and `detail-type` the ledger
row's type (`customer.created`, `payment_method.attached`,
`customer.subscription.updated`, ...) or `usage.failed`. `detail` is the
ledger row itself, its columns by name, with `id` for consumers to
deduplicate (delivery is at least once):

    {"id", "type", "subject_type", "subject_id", "actor_type", "actor_id",
     "data", "trace_id", "idempotency_key", "caused_by_webhook_event_id",
     "inserted_at"}

Never a raw Stripe payload, card data or an address: the ledger rows hold
none (their `data` names fields and ids, never values of a customer or a
card), and `guard` drops such keys wherever they would appear, so a future
ledger row that carries one is published without it (and logged, by key
name only).

Usage events are their own records, not ledger rows, and are not published
one by one (usage.* ledger rows still written by older code are skipped,
but for `usage.drift_detected`: a reconciliation run's drifted bucket);
a usage event that ends `failed` is, from the meter_events stream, so the
service that reported it can react:

    {"id", "type": "usage.failed", "identifier", "customer_id",
     "stripe_customer_id", "event_name", "value", "occurred_at",
     "stripe_error": {"type", "code", "message"}, "failed_at"}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from billing.core.observability import logger
from billing.core.pii import PII_KEYS

SOURCE: Final = "billing-functions"
USAGE_FAILED: Final = "usage.failed"
USAGE_PREFIX: Final = "usage."
# A reconciliation run's finding (billing.metering.reconciliation): a ledger row, published.
USAGE_DRIFT_DETECTED: Final = "usage.drift_detected"

# The ledger row's columns, as the detail carries them (pk and sk are its
# DynamoDB keys: subject_type#subject_id and inserted_at#id, nothing new).
LEDGER_COLUMNS: Final = ("id", "type", "subject_type", "subject_id", "actor_type", "actor_id", "data",
                         "trace_id", "idempotency_key", "caused_by_webhook_event_id", "inserted_at")
# Keys that never go on the bus, at any depth: personal data (billing.core.pii),
# card data, and what only a raw Stripe object or event carries.
CARD_KEYS: Final = frozenset({"card", "last4", "exp_month", "exp_year", "number", "cvc", "iin"})
RAW_PAYLOAD_KEYS: Final = frozenset({"object", "previous_attributes", "pending_webhooks", "body"})
NEVER_PUBLISHED: Final = PII_KEYS | CARD_KEYS | RAW_PAYLOAD_KEYS
STRIPE_ERROR_KEYS: Final = ("type", "code", "message")


@dataclass(frozen=True)
class DomainEvent:
    """One event for the bus. `subject` orders it: a subject's events are
    put one after another, never the next before the previous is accepted."""

    subject: str
    detail_type: str
    detail: dict[str, Any]
    time: str | None  # ISO 8601: when it happened (EventBridge's `time`)


class Unpublishable(ValueError):
    """A stream record that cannot become an event (no image, no type)."""


def _plain(value: Any) -> Any:
    """Stream images as JSON: DynamoDB numbers arrive as Decimal."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def _json_column(value: Any) -> Any:
    """A PynamoDB JSONAttribute is stored as a JSON string."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _plain(value)


def guard(value: Any, dropped: set[str] | None = None) -> Any:
    """`value` without any key of NEVER_PUBLISHED, at any depth; the names
    of what was dropped are added to `dropped`."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in NEVER_PUBLISHED:
                if dropped is not None:
                    dropped.add(str(key))
                continue
            out[key] = guard(item, dropped)
        return out
    if isinstance(value, list):
        return [guard(item, dropped) for item in value]
    return value


def from_ledger(image: Mapping[str, Any] | None) -> DomainEvent | None:
    """The event of one ledger row (its stream record's new image), or None
    for a row that is not published (usage.*)."""
    if not image or not isinstance(image.get("type"), str) or not image.get("id"):
        raise Unpublishable("a ledger stream record without a new image, a type or an id")
    row_type = str(image["type"])
    if row_type.startswith(USAGE_PREFIX) and row_type != USAGE_DRIFT_DETECTED:
        return None
    detail: dict[str, Any] = {column: _plain(image.get(column)) for column in LEDGER_COLUMNS}
    dropped: set[str] = set()
    data = _json_column(image.get("data"))
    detail["data"] = guard(data if isinstance(data, dict) else {}, dropped)
    if dropped:
        logger.warning("ledger row data carried keys that are never published; dropped",
                       extra={"ledger_id": detail["id"], "ledger_type": row_type, "keys": sorted(dropped)})
    subject = f"{detail['subject_type']}#{detail['subject_id']}"
    return DomainEvent(subject, row_type, detail, detail.get("inserted_at"))


def _status(image: Mapping[str, Any] | None) -> str | None:
    value = (image or {}).get("stripe_status")
    return str(value) if value is not None else None


def _stripe_error(value: Any) -> dict[str, Any]:
    error = _json_column(value)
    if not isinstance(error, dict):
        error = {}
    # The row's error is already sanitized ({type, code, message}); only those go out.
    return {key: (str(error[key]) if error.get(key) is not None else None) for key in STRIPE_ERROR_KEYS}


def from_usage(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> DomainEvent | None:
    """usage.failed for a meter_events row that became failed, else None (the
    mapping's filter passes only those; this checks again, so a mis-set
    filter cannot publish other transitions)."""
    if new is None or _status(new) != "failed" or _status(old) == "failed":
        return None
    identifier = new.get("pk")
    if not isinstance(identifier, str) or not identifier:
        raise Unpublishable("a meter_events stream record without its identifier")
    failed_at = new.get("failed_at") or new.get("updated_at")
    detail = {
        "id": f"{USAGE_FAILED}:{identifier}:{failed_at}",
        "type": USAGE_FAILED,
        "identifier": identifier,
        "customer_id": new.get("customer_id"),
        "stripe_customer_id": new.get("stripe_customer_id"),
        "event_name": new.get("event_name"),
        "value": _plain(new.get("value")),
        "occurred_at": new.get("occurred_at"),
        "stripe_error": _stripe_error(new.get("stripe_error")),
        "failed_at": failed_at,
    }
    return DomainEvent(f"usage#{identifier}", USAGE_FAILED, detail, str(failed_at) if failed_at else None)
