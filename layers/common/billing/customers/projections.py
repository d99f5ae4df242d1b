"""Reads of the thin projections (payment methods, subscriptions, invoices,
charges) that hang off a customer."""

from __future__ import annotations

from typing import Any

from billing.data.tables import ChargeRow, InvoiceRow, PaymentMethodRow, SubscriptionRow

ProjectionRow = PaymentMethodRow | SubscriptionRow | InvoiceRow | ChargeRow
MAX_EMBEDDED = 100


def to_api(row: ProjectionRow) -> dict[str, Any]:
    # The row's key is the processor's id (pm_..., sub_..., in_..., ch_...);
    # every projection object in the API carries it as processor_id.
    body: dict[str, Any] = {
        "id": row.pk, "processor_id": row.pk, "customer_id": row.customer_id, "status": row.status,
        "data": row.data or {}, "lock_version": row.lock_version, "last_stripe_event_ts": row.last_stripe_event_ts,
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at,
    }
    if isinstance(row, PaymentMethodRow):
        body.update({"type": row.type, "brand": row.brand, "last4": row.last4, "exp_month": row.exp_month,
                     "exp_year": row.exp_year, "detached_at": row.detached_at})
    return body


def list_for_customer(model: type[ProjectionRow], customer_id: str, *, limit: int = MAX_EMBEDDED
                      ) -> list[dict[str, Any]]:
    return [to_api(row) for row in model.by_customer.query(customer_id, limit=limit, scan_index_forward=False)]
