"""Charges keep their invoice and subscription on API versions from
2025-03-31.basil, where a charge no longer names its invoice: the link runs
through the invoice's payments (InvoicePayment, by payment intent), and it
ends the same whichever of the charge and the invoice is delivered first.
Payloads are Stripe's fixtures in that version's shape, signed for real."""

from __future__ import annotations

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import new_customer
from tests.integration.webhook_helpers import accepted, event, fake, settle, stripe_object, uid

BASIL_ON = "2025-09-30.clover"


@pytest.mark.parametrize("first", ["charge", "invoice"])
def test_a_charge_is_linked_to_its_invoice_and_subscription_whichever_arrives_first(
        api: Client, stack: LocalStack, first: str) -> None:
    customer = new_customer(api)
    cus, sub, inv, pi, ch = (customer["processor_id"], f"sub_{uid()}", f"in_{uid()}", f"pi_{uid()}", f"ch_{uid()}")
    invoice = stripe_object("invoice", id=inv, customer=cus, status="paid", billing_reason="subscription_cycle",
                            parent={"type": "subscription_details", "quote_details": None,
                                    "subscription_details": {"subscription": sub, "metadata": None}})
    invoice.pop("subscription", None)  # basil on: under parent.subscription_details only
    charge = stripe_object("charge", id=ch, customer=cus, payment_intent=pi, status="succeeded", paid=True)
    assert "invoice" not in charge  # basil on: a charge names no invoice
    payment = stripe_object("invoice_payment", id=f"inpay_{uid()}", invoice=inv, status="paid",
                            payment={"type": "payment_intent", "payment_intent": pi})
    for obj in (invoice, charge, payment):
        fake(stack).put_object(obj)
    events = {"invoice": event("invoice.paid", invoice), "charge": event("charge.succeeded", charge)}
    for e in events.values():
        e["api_version"] = BASIL_ON
    order = [events[first], events["invoice" if first == "charge" else "charge"]]
    for e in order:
        accepted(api, e)
        assert [s["status"] for s in settle(stack, api, e["id"])] == ["processed"]

    linked = api.get("/v1/charges", params={"subscription": sub})
    assert linked.status_code == 200, linked.text
    assert [(c["id"], c["invoice_id"], c["subscription_id"]) for c in linked.json()["data"]] == [(ch, inv, sub)]
    (invoice_row,) = api.get("/v1/invoices", params={"subscription": sub}).json()["data"]
    assert invoice_row["id"] == inv
