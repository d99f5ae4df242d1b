"""The catalog as the API reads it: a price or a product by id, and prices
listed by index (active, product, lookup_key; never a scan), for pricing
pages."""

from __future__ import annotations

from typing import Any

from billing.core.errors import NotFound
from billing.data import pagination
from billing.data.billing_tables import PriceRow, ProductRow
from billing.data.reads import find, whole


def price_to_api(row: PriceRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor_id": row.processor_id or row.pk, "product_id": row.product_id,
        "active": bool(row.active), "currency": row.currency, "unit_amount": whole(row.unit_amount),
        "type": row.type, "recurring_interval": row.recurring_interval,
        "recurring_interval_count": whole(row.recurring_interval_count), "lookup_key": row.lookup_key,
        "nickname": row.nickname, "metadata": row.metadata or {}, "data": row.data or {},
        "lock_version": row.lock_version, "last_stripe_event_ts": whole(row.last_stripe_event_ts),
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


def product_to_api(row: ProductRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor_id": row.processor_id or row.pk, "name": row.name, "description": row.description,
        "active": bool(row.active), "default_price_id": row.default_price_id, "features": list(row.features or []),
        "metadata": row.metadata or {}, "data": row.data or {}, "lock_version": row.lock_version,
        "last_stripe_event_ts": whole(row.last_stripe_event_ts), "last_stripe_event_id": row.last_stripe_event_id,
        "inserted_at": row.inserted_at, "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


def get_price(price_id: str) -> dict[str, Any]:
    row = find(PriceRow, price_id, consistent=False)
    if row is None:
        raise NotFound(f"price {price_id} not found")
    return price_to_api(row)


def get_product(product_id: str) -> dict[str, Any]:
    row = find(ProductRow, product_id, consistent=False)
    if row is None:
        raise NotFound(f"product {product_id} not found")
    return product_to_api(row)


def product_name(product_id: str | None) -> str | None:
    """The projected product's name (None if it is not projected yet)."""
    row = find(ProductRow, product_id, consistent=False) if product_id else None
    return row.name if row is not None else None


def list_prices(*, active: bool | None, product: str | None, lookup_key: str | None, include_deleted: bool = False,
                limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, from the index of the most selective filter; the other
    filters narrow the page (a short page still carries the cursor on)."""
    filters = {"lookup_key": lookup_key, "product_id": product,
               "active_key": None if active is None else ("active" if active else "inactive")}
    rows, next_cursor = pagination.filtered_page(
        PriceRow, [("lookup_key", PriceRow.by_lookup_key), ("product_id", PriceRow.by_product),
                   ("active_key", PriceRow.by_active_lane)], filters,
        everything=(PriceRow.by_list_lane, "price"), name=f"prices:{'all' if include_deleted else 'live'}",
        condition=None if include_deleted else PriceRow.deleted_at.does_not_exist(), limit=limit, cursor=cursor)
    return [price_to_api(r) for r in rows], next_cursor
