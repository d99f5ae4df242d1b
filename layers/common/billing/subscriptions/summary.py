"""What a host app asks on every request, answered from at most two
DynamoDB reads: the owner's billing (customer, current subscriptions with
their product names, active entitlements, delinquent) and its entitlements
(one read).

The answer is kept on the owner's guard item (OwnerSummaryRow, the item
that maps the owner to its customer), denormalised when a subscription or
an entitlement summary is applied (webhook path, user path, sync): in the
same transaction as that row and its ledger row, on condition that the
guard still names the customer and that the summary is the version read.
A lost race re-runs the whole apply. Ended subscriptions (canceled,
incomplete_expired) leave the summary.

A product renamed after a subscription was applied shows its old name until
that subscription changes again: names are copied when a subscription is
applied, so that reading never needs a third read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from billing.catalog.queries import product_name
from billing.core.errors import NotFound
from billing.core.observability import logger
from billing.customers.keys import owner_guard, validate_owner
from billing.customers.records import to_api as customer_to_api
from billing.data.billing_tables import OwnerSummaryRow
from billing.data.reads import find, whole
from billing.data.tables import CustomerRow, SubscriptionRow
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure

ENDED: Final = frozenset({"canceled", "incomplete_expired"})
DELINQUENT: Final = frozenset({"past_due", "unpaid"})


def _name(product_id: str | None) -> str | None:
    """The product's name: projected, else asked of the processor (its
    product.created may still be on its way); None if neither knows."""
    if product_id is None:
        return None
    name = product_name(product_id)
    if name is not None:
        return name
    try:
        found = get_processor().retrieve_object("product", product_id)
    except ProcessorFailure as failure:
        logger.info("product name unknown for the billing summary",
                    extra={"product_id": product_id, "code": failure.code})
        return None
    return found.get("name") if isinstance(found.get("name"), str) else None


def entry(row: SubscriptionRow) -> dict[str, Any]:
    """One subscription as the billing answer shows it."""
    return {
        "id": row.pk, "status": row.status, "price_id": row.price_id, "product_id": row.product_id,
        "product_name": _name(row.product_id), "quantity": whole(row.quantity),
        "current_period_end": whole(row.current_period_end), "cancel_at_period_end": bool(row.cancel_at_period_end),
        "trial_end": whole(row.trial_end), "collection_paused": row.pause_behavior is not None,
    }


def _update(tw: TransactWrite, customer_id: str | None,
            change: Callable[[OwnerSummaryRow], list[Action] | None]) -> bool:
    """Add the summary's change (if its customer has an owner whose guard
    names it, and `change` has one) to the transaction; whether it did."""
    customer = find(CustomerRow, customer_id) if customer_id else None
    if customer is None or customer.kind != "customer" or customer.deleted_at \
            or not (customer.owner_type and customer.owner_id):
        return False
    key = owner_guard(customer.processor, customer.owner_type, customer.owner_id)
    summary = find(OwnerSummaryRow, key)
    if summary is None or summary.customer_id != customer.pk:
        return False
    actions = change(summary)
    if not actions:
        return False
    version = summary.summary_version
    same_version = (OwnerSummaryRow.summary_version.does_not_exist() if version is None
                    else OwnerSummaryRow.summary_version == version)
    tw.update(OwnerSummaryRow(pk=key), actions=[*actions, OwnerSummaryRow.summary_version.set(int(version or 0) + 1)],
              condition=(OwnerSummaryRow.customer_id == customer.pk) & same_version)
    return True


def add_subscription(tw: TransactWrite, row: Any) -> None:
    """The subscription row as just written, into its owner's summary."""
    def change(summary: OwnerSummaryRow) -> list[Action] | None:
        current = dict(summary.subscriptions or {})
        if row.status in ENDED:
            if row.pk not in current:
                return None
            current.pop(row.pk)
        else:
            new = entry(row)
            if current.get(row.pk) == new:
                return None
            current[row.pk] = new
        return [OwnerSummaryRow.subscriptions.set(current)]

    _update(tw, row.customer_id, change)


def add_entitlements(tw: TransactWrite, row: Any) -> None:
    """The customer's active features (an entitlement summary row), into its owner's summary."""
    def change(summary: OwnerSummaryRow) -> list[Action] | None:
        features = sorted(row.features or [])
        return None if list(summary.features or []) == features else [OwnerSummaryRow.features.set(features)]

    _update(tw, row.customer_id, change)


# -- the hot path ----------------------------------------------------------------------


def _summary(owner_type: str, owner_id: str) -> OwnerSummaryRow:
    validate_owner(owner_type, owner_id)
    summary = find(OwnerSummaryRow, owner_guard(processor_name(), owner_type, owner_id))
    if summary is None or not summary.customer_id:
        raise NotFound(f"owner {owner_type}/{owner_id} has no customer")
    return summary


def entitlements(owner_type: str, owner_id: str) -> dict[str, Any]:
    """The owner's active feature lookup keys: one read."""
    return {"features": list(_summary(owner_type, owner_id).features or [])}


def billing(owner_type: str, owner_id: str) -> dict[str, Any]:
    """The owner's customer, current subscriptions, features and whether it is
    delinquent: two reads (the owner's summary, then its customer)."""
    summary = _summary(owner_type, owner_id)
    customer = find(CustomerRow, str(summary.customer_id))
    if customer is None or customer.kind != "customer" or customer.deleted_at:
        raise NotFound(f"owner {owner_type}/{owner_id} has no customer")
    subscriptions = sorted((summary.subscriptions or {}).values(), key=lambda s: (str(s.get("status")), s["id"]))
    delinquent = bool((customer.data or {}).get("delinquent")) or any(s.get("status") in DELINQUENT
                                                                       for s in subscriptions)
    return {"customer": customer_to_api(customer), "subscriptions": subscriptions,
            "entitlements": list(summary.features or []), "delinquent": delinquent}

