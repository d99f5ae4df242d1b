"""Subscriptions, invoices and charges as the API lists and reads them:
each filter served by an index (customer, status, price, subscription),
newest first, the other filters narrowing the page; never a scan."""

from __future__ import annotations

from typing import Any

from billing.core.errors import NotFound
from billing.data import pagination
from billing.data.reads import find, whole
from billing.data.tables import ChargeRow, InvoiceRow, SubscriptionRow

Listed = SubscriptionRow | InvoiceRow | ChargeRow


def _common(row: Listed) -> dict[str, Any]:
    return {
        "id": row.pk, "processor_id": row.pk, "customer_id": row.customer_id, "status": row.status,
        "data": row.data or {}, "lock_version": row.lock_version,
        "last_stripe_event_ts": whole(row.last_stripe_event_ts), "last_stripe_event_id": row.last_stripe_event_id,
        "inserted_at": row.inserted_at, "updated_at": row.updated_at,
    }


def subscription_to_api(row: SubscriptionRow) -> dict[str, Any]:
    return {**_common(row), "price_id": row.price_id, "product_id": row.product_id, "quantity": whole(row.quantity),
            "current_period_end": whole(row.current_period_end),
            "cancel_at_period_end": bool(row.cancel_at_period_end), "trial_end": whole(row.trial_end),
            "pause_collection": row.pause_behavior}


def invoice_to_api(row: InvoiceRow) -> dict[str, Any]:
    return {**_common(row), "subscription_id": row.subscription_id, "billing_reason": row.billing_reason,
            "currency": row.currency, "amount_due": whole(row.amount_due), "amount_paid": whole(row.amount_paid)}


def charge_to_api(row: ChargeRow) -> dict[str, Any]:
    return {**_common(row), "subscription_id": row.subscription_id, "invoice_id": row.invoice_id,
            "currency": row.currency, "amount": whole(row.amount)}


def get_subscription(subscription_id: str) -> dict[str, Any]:
    row = find(SubscriptionRow, subscription_id)
    if row is None:
        raise NotFound(f"subscription {subscription_id} not found")
    return subscription_to_api(row)


def get_invoice(invoice_id: str) -> dict[str, Any]:
    row = find(InvoiceRow, invoice_id)
    if row is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return invoice_to_api(row)


def get_charge(charge_id: str) -> dict[str, Any]:
    row = find(ChargeRow, charge_id)
    if row is None:
        raise NotFound(f"charge {charge_id} not found")
    return charge_to_api(row)


def list_subscriptions(*, customer_id: str | None, status: str | None, price: str | None, limit: int,
                       cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    rows, next_cursor = pagination.filtered_page(
        SubscriptionRow, [("customer_id", SubscriptionRow.by_customer), ("price_id", SubscriptionRow.by_price),
                          ("status", SubscriptionRow.by_status_lane)],
        {"customer_id": customer_id, "price_id": price, "status": status},
        everything=(SubscriptionRow.by_list_lane, "subscription"), name="subscriptions", limit=limit, cursor=cursor)
    return [subscription_to_api(r) for r in rows], next_cursor


def list_invoices(*, customer_id: str | None, status: str | None, subscription: str | None, limit: int,
                  cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    rows, next_cursor = pagination.filtered_page(
        InvoiceRow, [("subscription_id", InvoiceRow.by_subscription), ("customer_id", InvoiceRow.by_customer),
                     ("status", InvoiceRow.by_status_lane)],
        {"customer_id": customer_id, "subscription_id": subscription, "status": status},
        everything=(InvoiceRow.by_list_lane, "invoice"), name="invoices", limit=limit, cursor=cursor)
    return [invoice_to_api(r) for r in rows], next_cursor


def list_charges(*, customer_id: str | None, subscription: str | None, limit: int, cursor: str | None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    rows, next_cursor = pagination.filtered_page(
        ChargeRow, [("subscription_id", ChargeRow.by_subscription), ("customer_id", ChargeRow.by_customer)],
        {"customer_id": customer_id, "subscription_id": subscription},
        everything=(ChargeRow.by_list_lane, "charge"), name="charges", limit=limit, cursor=cursor)
    return [charge_to_api(r) for r in rows], next_cursor
