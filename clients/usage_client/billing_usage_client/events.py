"""What one usage report holds, as the API takes it (PUT's body; each
event of a batch adds its identifier)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# The most events POST /v1/usage/batch takes in one request.
MAX_BATCH = 100


def new_identifier() -> str:
    """A fresh identifier (fits the service's 1-100 chars of A-Za-z0-9_-.:)."""
    return f"usage-{uuid.uuid4()}"


def event_body(event_name: str, value: int, *, customer_id: str | None = None,
               stripe_customer_id: str | None = None, owner: Mapping[str, str] | tuple[str, str] | None = None,
               timestamp: int | datetime | str | None = None, operation_id: str | None = None) -> dict[str, Any]:
    """The JSON of one usage report (PUT's body; a batch event adds its identifier)."""
    given = [name for name, v in (("customer_id", customer_id), ("stripe_customer_id", stripe_customer_id),
                                  ("owner", owner)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of customer_id, stripe_customer_id or owner")
    body: dict[str, Any] = {"event_name": event_name, "value": value}
    if customer_id is not None:
        body["customer_id"] = customer_id
    if stripe_customer_id is not None:
        body["stripe_customer_id"] = stripe_customer_id
    if owner is not None:
        owner_type, owner_id = (owner["type"], owner["id"]) if isinstance(owner, Mapping) else owner
        body["owner"] = {"type": str(owner_type), "id": str(owner_id)}
    if timestamp is not None:
        body["timestamp"] = _timestamp(timestamp)
    if operation_id is not None:
        body["operation_id"] = operation_id
    return body


def _timestamp(value: int | datetime | str) -> int | str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp: use an aware datetime (with a timezone)")
        return int(value.timestamp())
    return value


