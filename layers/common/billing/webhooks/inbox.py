"""The once-only inbox every inbound path writes to: a Stripe event's id,
type, created and body become one webhook_events row, with one conditional
PutItem, so an event id is stored once whichever way it arrives.

Two paths use it today: the webhook route (ingest.py: the signed HTTP body)
and the EventBridge partner bus (billing.sync.inbound: the `detail` of a
Stripe event destination's event). Both land on the same row, so a webhook
endpoint and an event destination can run side by side during a migration
and every event is applied once.

Lean on purpose (the webhook function's cold start): no Stripe SDK, no
PynamoDB; the row has the attribute names of billing.data.tables.WebhookEventRow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from billing.core import clock
from billing.core.aws import LazyClient
from billing.core.errors import BadRequest, Unavailable
from billing.core.lanes import laned
from billing.core.observability import logger
from billing.data.cancellation import retryable_dynamodb_code

MAX_ID_LENGTH = 255

_IDENTIFIER = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


@dataclass(frozen=True)
class Delivery:
    """What the inbox reads from an event; the rest waits for the processor."""

    id: str
    type: str
    created: int
    livemode: bool | None
    object_id: str | None
    body: str


def _unix_seconds(value: Any) -> int | None:
    """Stripe's `created`: unix seconds (snapshot events) or RFC 3339 (thin events)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return int(moment.timestamp()) if moment.tzinfo is not None else None
    return None


def _object_id(doc: dict[str, Any], problems: dict[str, str]) -> str | None:
    """The id of the object the event is about: `data.object.id` (snapshot
    events) or `related_object.id` (thin events, which carry no `data`)."""
    if "data" in doc:
        data = doc["data"]
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            problems["data.object"] = "must be an object"
            return None
        raw_id = obj.get("id")
        if raw_id is not None and (not isinstance(raw_id, str) or not raw_id):
            problems["data.object.id"] = "must be a string"
            return None
        return raw_id if isinstance(raw_id, str) else None
    related = doc.get("related_object")
    if isinstance(related, dict) and isinstance(related.get("id"), str) and related["id"]:
        return str(related["id"])[:MAX_ID_LENGTH]
    return None


def read(doc: Any, body: str) -> Delivery:
    """The fields the row needs from a parsed Stripe event (`body` is what is
    stored), or 400 naming what is wrong (never a 500, never a value)."""
    if not isinstance(doc, dict):
        raise BadRequest("the Stripe event is not a JSON object")
    problems: dict[str, str] = {}
    event_id, event_type = doc.get("id"), doc.get("type")
    if not isinstance(event_id, str) or not _IDENTIFIER.match(event_id) or len(event_id) > MAX_ID_LENGTH:
        problems["id"] = "must be a Stripe event id"
    if not isinstance(event_type, str) or not _IDENTIFIER.match(event_type) or len(event_type) > MAX_ID_LENGTH:
        problems["type"] = "must be a Stripe event type"
    created = _unix_seconds(doc.get("created"))
    if created is None:
        problems["created"] = "must be unix seconds or an RFC 3339 time"
    livemode = doc.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        problems["livemode"] = "must be a boolean"
    object_id = _object_id(doc, problems)
    if problems or not isinstance(event_id, str) or not isinstance(event_type, str) or created is None:
        raise BadRequest.of_fields("malformed Stripe event", problems)
    return Delivery(event_id, event_type, created, livemode, object_id, body)


_dynamodb = LazyClient("dynamodb")


def put_once(delivery: Delivery, table: str, *, via: str) -> bool:
    """One conditional PutItem. True if stored, False if this event id was
    already stored (by this path or the other one). `via` (webhook,
    eventbridge) is recorded on the row: which path stored it first."""
    now = clock.iso()
    item: dict[str, Any] = {
        "pk": {"S": delivery.id},
        "type": {"S": delivery.type},
        "created": {"N": str(delivery.created)},
        "body": {"S": delivery.body},
        "received_at": {"S": now},
        "received_via": {"S": via},
        "updated_at": {"S": now},
        "status": {"S": "received"},
        # Keys the row into the lean by_received index until the processor
        # records an outcome: a row whose processing dies is found there and
        # re-driven (store.redrive_stuck). Same PutItem, one small index write,
        # on one of the lanes so a burst of deliveries heats no single key.
        "received_key": {"S": laned("received", delivery.id)},
        "attempts": {"N": "0"},
        "run": {"N": "0"},
        "replays": {"N": "0"},
        "deferrals": {"N": "0"},
    }
    if delivery.livemode is not None:
        item["livemode"] = {"BOOL": delivery.livemode}
    if delivery.object_id is not None:
        item["object_id"] = {"S": delivery.object_id}
    try:
        _dynamodb().put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        code = retryable_dynamodb_code(exc)
        if code is None:
            raise
        # Throttled past botocore's retries: nothing was stored, so the
        # sender is told to deliver it again (503 to Stripe; an error to
        # EventBridge's invocation, which Lambda retries).
        logger.warning("Stripe event not stored: DynamoDB unavailable",
                       extra={"event_id": delivery.id, "code": code, "via": via})
        raise Unavailable("the event could not be stored now; deliver it again shortly") from None
    return True
