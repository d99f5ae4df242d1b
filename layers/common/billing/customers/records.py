"""Customers as the API reads them: one by id, owner or processor id, with
its projections embedded on request, lists served by indexes, and the
customer's ledger."""

from __future__ import annotations

from typing import Any

from billing.core.errors import NotFound, ValidationFailed
from billing.customers import projections
from billing.customers.keys import owner_guard, owner_key, processor_guard
from billing.data import ledger, pagination
from billing.data.reads import find
from billing.data.tables import (
    ChargeRow,
    CustomerRow,
    GuardRow,
    InvoiceRow,
    LedgerRow,
    PaymentMethodRow,
    SubscriptionRow,
    key_names,
)
from billing.processor import processor_name

# -- serialisation ------------------------------------------------------------------


def to_api(row: CustomerRow) -> dict[str, Any]:
    return {
        "id": row.pk, "owner_type": row.owner_type, "owner_id": row.owner_id, "processor": row.processor,
        "processor_id": row.processor_id, "email": row.email, "name": row.name, "currency": row.currency,
        "tax_exempt": row.tax_exempt, "preferred_locale": row.preferred_locale,
        "preferred_timezone": row.preferred_timezone, "metadata": row.metadata or {}, "data": row.data or {},
        "default_payment_method_id": row.default_payment_method_id, "lock_version": row.lock_version,
        "last_stripe_event_ts": int(row.last_stripe_event_ts) if row.last_stripe_event_ts is not None else None,
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


# -- reads ---------------------------------------------------------------------------


def load(customer_id: str, *, consistent: bool = True) -> CustomerRow:
    row = find(CustomerRow, customer_id, consistent=consistent)
    if row is None or row.kind != "customer":
        raise NotFound(f"customer {customer_id} not found")
    return row


def find_by_owner(owner_type: str, owner_id: str, processor: str | None = None) -> CustomerRow | None:
    processor = processor or processor_name()
    guard = find(GuardRow, owner_guard(processor, owner_type, owner_id))
    return load(guard.customer_id) if guard is not None and guard.customer_id else None


def find_by_processor_id(processor_id: str) -> CustomerRow | None:
    guard = find(GuardRow, processor_guard(processor_name(), processor_id))
    return load(guard.customer_id) if guard is not None and guard.customer_id else None


_INCLUDES: dict[str, type[PaymentMethodRow] | type[SubscriptionRow] | type[InvoiceRow] | type[ChargeRow]] = {
    "payment_methods": PaymentMethodRow, "subscriptions": SubscriptionRow,
    "invoices": InvoiceRow, "charges": ChargeRow,
}


def parse_includes(raw: str | None) -> list[str]:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(_INCLUDES))
    if unknown:
        raise ValidationFailed(f"unknown include: {', '.join(unknown)}",
                               {"include": f"allowed: {', '.join(_INCLUDES)}"})
    return names


def get(customer_id: str, includes: list[str]) -> dict[str, Any]:
    body = to_api(load(customer_id))
    for name in includes:
        body[name] = projections.list_for_customer(_INCLUDES[name], customer_id)
    return body


def list_customers(filters: dict[str, str], *, limit: int, cursor: str | None,
                   include_deleted: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every filter; the remaining filters narrow the page."""
    condition: Any = None if include_deleted else CustomerRow.deleted_at.does_not_exist()
    if "owner_type" in filters or "owner_id" in filters:
        if not ("owner_type" in filters and "owner_id" in filters):
            raise ValidationFailed("owner_type and owner_id filter together", {"owner": "give both"})
        index, hash_key = "by_owner", owner_key(filters["owner_type"], filters["owner_id"])
    elif "processor_id" in filters:
        index, hash_key = "by_processor_id", filters["processor_id"]
    elif "email" in filters:
        index, hash_key = "by_email", filters["email"]
    elif "currency" in filters:
        index, hash_key = "by_currency", filters["currency"]
    else:
        index, hash_key = "by_inserted_lane", "customer"
    for name, attr in (("email", CustomerRow.email), ("currency", CustomerRow.currency)):
        if name in filters and index != f"by_{name}":
            term = attr == filters[name]
            condition = term if condition is None else condition & term
    scope = f"customers:{index}:{hash_key}:{'all' if include_deleted else 'live'}"
    page = pagination.laned_page if index == "by_inserted_lane" else pagination.query_page
    rows, next_cursor = page(CustomerRow, getattr(CustomerRow, index), hash_key, scope=scope,
                             limit=limit, cursor=cursor, condition=condition)
    return [to_api(r) for r in rows], next_cursor


def events(customer_id: str, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    load(customer_id)
    scope = f"ledger:customer:{customer_id}"
    start = pagination.decode(cursor, scope=scope, key_names=key_names(LedgerRow),
                              pinned={"pk": f"customer#{customer_id}"})
    rows, last = ledger.for_subject("customer", customer_id, limit=limit, cursor=start)
    return [r.to_dict() for r in rows], pagination.encode(last, scope=scope)

