"""The columns of price and product rows, read from the processor's object
(webhooks, re-fetches, backfills: one mapping for every path)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing.core import clock
from billing.data.lanes import laned
from billing.processor.fields import boolean, integer, mapping, metadata, reference, text


def created_sort(obj: dict[str, Any], row: Any) -> str:
    """`<created, ISO 8601>#<id>`: a list index's sort key, newest last; kept once set."""
    if getattr(row, "sort_key", None):
        return str(row.sort_key)
    created = integer(obj.get("created"))
    at = clock.iso(datetime.fromtimestamp(created, UTC)) if created is not None else clock.iso()
    return f"{at}#{obj['id']}"


def _deleted(obj: dict[str, Any], event_type: str, row: Any) -> str | None:
    if event_type.endswith(".deleted") or obj.get("deleted") is True:
        return str(row.deleted_at or clock.iso())
    return row.deleted_at if row.deleted_at else None


def price(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    deleted_at = _deleted(obj, event_type, row)
    active = False if deleted_at else bool(boolean(obj.get("active")))
    recurring = mapping(obj.get("recurring"))
    return {
        "processor_id": obj["id"], "list_lane": laned("price", obj["id"]), "sort_key": created_sort(obj, row),
        "active": active, "active_key": "active" if active else "inactive",
        "active_lane": laned("active" if active else "inactive", obj["id"]),
        "product_id": reference(obj.get("product")),
        "lookup_key": text(obj.get("lookup_key")), "currency": text(obj.get("currency")),
        "unit_amount": integer(obj.get("unit_amount")), "type": text(obj.get("type")),
        "recurring_interval": text(recurring.get("interval")),
        "recurring_interval_count": integer(recurring.get("interval_count")),
        "nickname": text(obj.get("nickname")), "metadata": metadata(obj), "deleted_at": deleted_at,
    }


def product(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    deleted_at = _deleted(obj, event_type, row)
    features = obj.get("marketing_features")
    return {
        "processor_id": obj["id"], "list_key": "product", "sort_key": created_sort(obj, row),
        "active": False if deleted_at else bool(boolean(obj.get("active"))), "name": text(obj.get("name")),
        "description": text(obj.get("description")), "default_price_id": reference(obj.get("default_price")),
        "features": [f["name"] for f in features if isinstance(f, dict) and isinstance(f.get("name"), str)]
        if isinstance(features, list) else [],
        "metadata": metadata(obj), "deleted_at": deleted_at,
    }
