"""How a charge finds its invoice, and so its subscription.

Before API version 2025-03-31.basil a charge named its invoice
(`charge.invoice`). From basil on it does not: an invoice is paid through
its payments (InvoicePayment), each naming the payment intent (or charge)
that paid it, so the charge's invoice is the one whose payment is the
charge's payment intent (`GET /v1/invoice_payments?payment[type]=payment_intent
&payment[payment_intent]=...`). The charge row then takes the invoice row's
subscription; a charge applied before its invoice keeps the invoice id, and
the invoice, when it comes, gives its subscription to the charges that
name it (link_charges, in the invoice's own transaction), so either order
ends linked.
"""

from __future__ import annotations

from typing import Any

from pynamodb.transactions import TransactWrite

from billing.core import clock
from billing.core.observability import logger
from billing.data.tables import ChargeRow
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.fields import mapping, reference


def invoice_of(charge: dict[str, Any]) -> str | None:
    """The invoice a charge paid: its own `invoice` (before basil), else the
    invoice whose payment is the charge's payment intent, asked of Stripe."""
    named = reference(charge.get("invoice"))
    intent = reference(charge.get("payment_intent"))
    if named is not None or intent is None:
        return named
    try:
        page = get_processor().list_objects("invoice_payment", limit=1, params={
            "payment": {"type": "payment_intent", "payment_intent": intent}})
    except ProcessorFailure as failure:
        if failure.transient:
            raise  # the event is retried
        # A Stripe-compatible server without invoice payments: left unlinked, not failed.
        logger.warning("charge's invoice payment could not be listed",
                       extra={"charge_id": charge.get("id"), "status": failure.status, "code": failure.code})
        return None
    payments = [p for p in page.get("data") or [] if isinstance(p, dict)]
    return reference(mapping(payments[0]).get("invoice")) if payments else None


def link_charges(tw: TransactWrite, invoice: Any) -> None:
    """Give the invoice's subscription to its customer's charges that name the
    invoice but were applied before it (so had no subscription to take)."""
    if not (invoice.customer_id and invoice.subscription_id):
        return
    waiting = ChargeRow.by_customer.query(
        invoice.customer_id,
        filter_condition=(ChargeRow.invoice_id == invoice.pk) & ChargeRow.subscription_id.does_not_exist())
    for charge in waiting:
        charge.subscription_id = invoice.subscription_id
        charge.updated_at = clock.iso()
        tw.save(charge)  # on its lock_version: a race re-runs the invoice's apply
