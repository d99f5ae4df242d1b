"""The columns of subscription, invoice, charge and entitlement rows, read
from the processor's object: the fields a user filters or sorts on. Both
paths use them (the webhook path's table-driven projection, and the user
path's record of Stripe's answer), so a row is the same whichever wrote it.

Subscriptions: the first item's price and product (what `?price=` filters
on), its period end (on the item in current API versions, on the
subscription in older ones), cancel at period end, the trial's end and the
pause of collection. Invoices: the subscription (top level in older
versions, under `parent.subscription_details` in current ones). Charges:
their invoice (named on the charge before 2025-03-31.basil, through the
invoice's payments from then on: charges.py) and, through its row, the
invoice's subscription.
"""

from __future__ import annotations

from typing import Any

from billing.catalog.columns import created_sort
from billing.data.lanes import laned
from billing.data.reads import find
from billing.data.tables import InvoiceRow
from billing.processor.fields import boolean, integer, mapping, reference, text
from billing.subscriptions import charges


def status_lane(obj: dict[str, Any]) -> str | None:
    """The status index's laned key (billing.data.lanes): no key takes every row of one status."""
    status = text(obj.get("status"))
    return laned(status, obj["id"]) if status else None


def first_item(obj: dict[str, Any]) -> dict[str, Any]:
    items = mapping(obj.get("items")).get("data")
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def subscription(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    item = first_item(obj)
    price = item.get("price")
    pause = mapping(obj.get("pause_collection"))
    return {
        "status": text(obj.get("status")), "status_lane": status_lane(obj), "sort_key": created_sort(obj, row),
        "list_lane": laned("subscription", obj["id"]),
        "price_id": reference(price), "product_id": reference(mapping(price).get("product")),
        "quantity": integer(item.get("quantity")),
        "current_period_end": integer(item.get("current_period_end")) or integer(obj.get("current_period_end")),
        "cancel_at_period_end": bool(boolean(obj.get("cancel_at_period_end"))),
        "trial_end": integer(obj.get("trial_end")), "pause_behavior": text(pause.get("behavior")),
    }


def invoice(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    parent = mapping(mapping(obj.get("parent")).get("subscription_details"))
    return {
        "status": text(obj.get("status")), "status_lane": status_lane(obj), "sort_key": created_sort(obj, row),
        "list_lane": laned("invoice", obj["id"]),
        "subscription_id": reference(obj.get("subscription")) or reference(parent.get("subscription")),
        "billing_reason": text(obj.get("billing_reason")), "currency": text(obj.get("currency")),
        "amount_due": integer(obj.get("amount_due")), "amount_paid": integer(obj.get("amount_paid")),
    }


def charge(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    # A link once made stays: a later event of the charge need not ask Stripe again.
    invoice_id = reference(obj.get("invoice")) or row.invoice_id or charges.invoice_of(obj)
    subscription_id = row.subscription_id
    if subscription_id is None and invoice_id is not None:
        found = find(InvoiceRow, invoice_id, consistent=False)
        subscription_id = found.subscription_id if found is not None else None
    return {
        "status": text(obj.get("status")), "sort_key": created_sort(obj, row), "list_lane": laned("charge", obj["id"]),
        "invoice_id": invoice_id, "subscription_id": subscription_id, "currency": text(obj.get("currency")),
        "amount": integer(obj.get("amount")),
    }


def entitlements_whole(obj: dict[str, Any]) -> bool:
    """Whether a summary lists every active entitlement: its event embeds only
    the first page of them (`has_more`), and the rest must be listed."""
    return not boolean(mapping(obj.get("entitlements")).get("has_more"))


def entitlements(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    """An active entitlement summary: the lookup keys of its features, sorted."""
    data = mapping(obj.get("entitlements")).get("data")
    keys = {text(e.get("lookup_key")) for e in data if isinstance(e, dict)} if isinstance(data, list) else set()
    return {"features": sorted(k for k in keys if k), "status": "active",
            "sort_key": row.sort_key or f"{obj.get('customer')}"}
