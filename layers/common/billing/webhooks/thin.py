"""Thin events, applied like snapshot events.

A Stripe event destination with the thin payload (over the webhook route
or EventBridge) sends `{"object": "v2.core.event", "id", "type", "created",
"related_object": {"id", "type", "url"}}` and no `data`. The row stores it
as it came; when it is applied, the object it is about is fetched from
Stripe and applied as `data.object` by the handler of the matching snapshot
type (`v1.customer.updated` is applied as `customer.updated`), so both
payload styles write the same projection and the same ledger rows.

The object fetched is Stripe's current state, which is at least as new as
the event; the event's own `created` is still the watermark, so an older
event that arrives later is stale as usual. Where the thin payload names no
related object, the full event is read from `/v2/core/events/{id}` for it.
Meter error events keep their own path (billing.metering.meter_errors
fetches the full event for its `data.reason`).
"""

from __future__ import annotations

from typing import Any

from billing.processor import get_processor
from billing.processor.base import OBJECT_TYPES
from billing.processor.errors import ProcessorFailure
from billing.webhooks.context import Malformed

THIN_OBJECT = "v2.core.event"
V1_PREFIX = "v1."


def is_thin(event: dict[str, Any]) -> bool:
    return event.get("object") == THIN_OBJECT or ("data" not in event and "related_object" in event)


def snapshot_type(event_type: str) -> str:
    """The snapshot event type a thin one stands for: `v1.customer.updated` ->
    `customer.updated`. v2 types (`v2.core...`) and others stay as they are."""
    return event_type[len(V1_PREFIX):] if event_type.startswith(V1_PREFIX) else event_type


def _related(event_id: str, event: dict[str, Any]) -> tuple[str, str]:
    related = event.get("related_object")
    if not (isinstance(related, dict) and isinstance(related.get("id"), str) and related.get("type")):
        # Not in the payload: the full event says.
        related = get_processor().retrieve_v2_event(event_id).get("related_object")
    if not (isinstance(related, dict) and isinstance(related.get("id"), str) and related["id"]
            and isinstance(related.get("type"), str)):
        raise Malformed("the thin event names no related object", code="related_object_missing")
    if related["type"] not in OBJECT_TYPES:
        raise Malformed(f"the thin event's related object type {related['type'][:64]} is not one this "
                        "service projects", code="related_object_unsupported")
    return str(related["type"]), str(related["id"])


def hydrate(event_id: str, event: dict[str, Any], applied_as: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the event as its snapshot handler reads it, the object fetched).

    A related object Stripe no longer has cannot be applied: Malformed
    (failed, not retried; replay it once the cause is known)."""
    object_type, object_id = _related(event_id, event)
    try:
        obj = get_processor().retrieve_object(object_type, object_id)
    except ProcessorFailure as failure:
        if failure.code == "resource_missing":
            raise Malformed(f"the thin event's {object_type} is gone at Stripe",
                            code="related_object_missing") from None
        raise
    snapshot = {"id": event_id, "object": "event", "type": applied_as, "created": event.get("created"),
                "livemode": event.get("livemode"), "data": {"object": obj}}
    return snapshot, obj
