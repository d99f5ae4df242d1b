"""Invoices, charges, payment and setup intents in the Fake: what a
subscription's billing makes, paid or failed by the customer's test card as
in Stripe's test mode (`pm_card_chargeCustomerFail` attaches, then its
charges fail). Each step records its events: invoice.created, .finalized,
charge.succeeded | .failed, invoice.paid | .payment_failed, and
customer.updated when the customer becomes (or stops being) delinquent."""

from __future__ import annotations

import copy
from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.cards import TEST_CARDS, TestCard
from devstack.fake_stripe.catalog import CatalogMixin
from devstack.fake_stripe.core import shape

# The Fake's cards by fingerprint: a payment method remembers which test card it came from.
_CARDS_BY_FINGERPRINT: Final = {card.fingerprint: (test_id, card) for test_id, card in TEST_CARDS.items()}
# Test cards that attach but whose charges fail (Stripe's "decline after attaching").
CHARGE_FAILS: Final = frozenset({"pm_card_chargeCustomerFail"})
_DECLINE: Final = ("card_declined", "generic_decline", "Your card was declined.")


class InvoicesMixin(CatalogMixin):
    def _init_state(self) -> None:
        super()._init_state()
        self._invoices: dict[str, JSONDict] = {}
        self._charges: dict[str, JSONDict] = {}
        self._payment_intents: dict[str, JSONDict] = {}
        self._setup_intents: dict[str, JSONDict] = {}
        self._sub_coupons: dict[str, str] = {}  # subscription id -> the coupon of its discount
        # An invoice's confirmation secret, kept off the invoice: Stripe includes
        # it only when asked (expand), never in webhooks.
        self._invoice_secrets: dict[str, JSONDict] = {}
        # Invoice payments (2025-03-31.basil on): how an invoice and its payment
        # intent (so its charges) are linked. Stripe includes them on an invoice
        # only when asked (`payments` is includable), never in webhooks.
        self._invoice_payments: dict[str, JSONDict] = {}

    # -- invoices -----------------------------------------------------------------------

    def _new_invoice(self, subscription: JSONDict, reason: str, lines: list[JSONDict], period: tuple[int, int]
                     ) -> JSONDict:
        now = self._billing_now()
        customer = self._customers.get(subscription["customer"]) or {}
        invoice = shape("invoice")
        invoice_id = self._next_id("in_fake")
        subtotal = sum(int(line["amount"]) for line in lines)
        discount = self._discount_amount(subscription, subtotal)
        total = max(0, subtotal - discount)
        for line in lines:
            line["invoice"] = invoice_id
        invoice.update(
            id=invoice_id, customer=subscription["customer"], subscription=subscription["id"],
            parent={"type": "subscription_details", "quote_details": None,
                    "subscription_details": {"subscription": subscription["id"], "metadata": None}},
            billing_reason=reason, status="draft", created=now, effective_at=None, currency=subscription["currency"],
            lines={"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                   "url": f"/v1/invoices/{invoice_id}/lines"},
            subtotal=subtotal, subtotal_excluding_tax=subtotal, total=total, total_excluding_tax=total,
            amount_due=total, amount_paid=0, amount_remaining=total, amount_overpaid=0, amount_shipping=0,
            total_discount_amounts=[{"amount": discount, "discount": "di_fake"}] if discount else [],
            discounts=[], period_start=period[0], period_end=period[1], attempt_count=0, attempted=False,
            auto_advance=True, customer_email=customer.get("email"), customer_name=customer.get("name"),
            customer_address=None, customer_phone=None, customer_shipping=None, customer_tax_ids=[],
            default_payment_method=None, due_date=None, from_invoice=None, hosted_invoice_url=None,
            invoice_pdf=None, last_finalization_error=None, latest_revision=None, next_payment_attempt=None,
            number=None, receipt_number=None, shipping_cost=None, shipping_details=None, starting_balance=0,
            ending_balance=None, status_transitions={"finalized_at": None, "marked_uncollectible_at": None,
                                                     "paid_at": None, "voided_at": None},
            test_clock=None, total_taxes=[], total_pretax_credit_amounts=[], webhooks_delivered_at=None,
            account_name="Fake Stripe",
        )
        invoice.pop("payments", None)
        invoice.pop("confirmation_secret", None)
        self._invoices[invoice_id] = invoice
        self._emit("invoice.created", invoice)
        return invoice

    def _line(self, subscription_id: str, item: JSONDict, amount: int, period: tuple[int, int], *,
              proration: bool, description: str) -> JSONDict:
        price = item["price"]
        return {
            "id": self._next_id("il_fake"), "object": "line_item", "amount": amount, "currency": price["currency"],
            "description": description, "discount_amounts": [], "discountable": True, "discounts": [],
            "invoice": None, "livemode": False, "metadata": {},
            "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                       "subscription_item_details": {"invoice_item": None, "proration": proration,
                                                     "proration_details": {"credited_items": None},
                                                     "subscription": subscription_id,
                                                     "subscription_item": item["id"]}},
            "period": {"start": period[0], "end": period[1]}, "pretax_credit_amounts": [],
            "pricing": {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                        "unit_amount_decimal": price["unit_amount_decimal"]},
            "quantity": item["quantity"], "subtotal": amount, "taxes": [],
        }

    def _discount_amount(self, subscription: JSONDict, subtotal: int) -> int:
        """The coupon of the subscription's discount, if it still applies to this invoice."""
        coupon = self._coupons.get(self._sub_coupons.get(subscription["id"], ""))
        if coupon is None or subtotal <= 0:
            return 0
        if coupon.get("duration") == "once" and any(i["subscription"] == subscription["id"] and i["amount_paid"]
                                                    for i in self._invoices.values()):
            return 0
        if coupon.get("percent_off"):
            return min(subtotal, round(subtotal * float(coupon["percent_off"]) / 100))
        return min(subtotal, int(coupon.get("amount_off") or 0))

    def _finalize(self, invoice: JSONDict) -> None:
        before = copy.deepcopy(invoice)
        invoice["status"] = "open"
        invoice["effective_at"] = invoice["status_transitions"]["finalized_at"] = self._billing_now()
        invoice["number"] = f"FAKE-{invoice['id'][-5:]}"
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/fake/{invoice['id']}"
        self._emit("invoice.finalized", invoice, {"status": before["status"], "number": None})

    def _settle(self, invoice: JSONDict, payment_method: str | None) -> bool:
        """Collect a finalized invoice: nothing to pay is paid; otherwise the
        payment method is charged (no payment method fails). True if paid."""
        if invoice["amount_due"] <= 0:
            self._mark_paid(invoice)
            return True
        intent = self._await_payment(invoice, payment_method)
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        charge = self._charge(invoice, intent, payment_method)
        if charge is not None and charge["paid"]:
            self._mark_paid(invoice)
            return True
        self._emit("invoice.payment_failed", invoice)
        self._set_delinquent(invoice["customer"], True)
        return False

    def _await_payment(self, invoice: JSONDict, payment_method: str | None) -> JSONDict:
        """The payment intent an open invoice is paid through, and its client secret."""
        intent = self._new_payment_intent(invoice["customer"], invoice["amount_due"], invoice["currency"],
                                          payment_method)
        self._invoice_secrets[invoice["id"]] = {"client_secret": intent["client_secret"], "type": "payment_intent"}
        payment_id = self._next_id("inpay_fake")
        self._invoice_payments[payment_id] = {
            "object": "invoice_payment", "id": payment_id, "invoice": invoice["id"], "is_default": True,
            "amount_paid": None, "amount_requested": invoice["amount_due"], "currency": invoice["currency"],
            "created": self._billing_now(), "livemode": False, "status": "open",
            "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
            "status_transitions": {"canceled_at": None, "paid_at": None}}
        return intent

    def _mark_paid(self, invoice: JSONDict) -> None:
        before = {"status": invoice["status"], "amount_paid": invoice["amount_paid"]}
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = self._billing_now()
        for payment in self._invoice_payments.values():
            if payment["invoice"] == invoice["id"]:
                payment.update(status="paid", amount_paid=invoice["amount_due"])
                payment["status_transitions"]["paid_at"] = self._billing_now()
        self._emit("invoice.paid", invoice, before)
        self._set_delinquent(invoice["customer"], False)

    def _close(self, invoice: JSONDict, behavior: str) -> None:
        """A paused subscription's invoice: voided, marked uncollectible, or kept as a draft."""
        if behavior == "keep_as_draft":
            return
        before = {"status": invoice["status"]}
        invoice["status"] = "void" if behavior == "void" else "uncollectible"
        key = "voided_at" if behavior == "void" else "marked_uncollectible_at"
        invoice["status_transitions"][key] = self._billing_now()
        invoice.update(amount_remaining=0 if behavior == "void" else invoice["amount_remaining"])
        self._emit("invoice.voided" if behavior == "void" else "invoice.marked_uncollectible", invoice, before)

    def _set_delinquent(self, customer_id: str, delinquent: bool) -> None:
        customer = self._customers.get(customer_id)
        if customer is not None and bool(customer.get("delinquent")) != delinquent:
            customer["delinquent"] = delinquent
            self._emit("customer.updated", customer, {"delinquent": not delinquent})

    # -- payments -----------------------------------------------------------------------

    def _card_of(self, payment_method: str | None) -> tuple[str, TestCard] | None:
        pm = self._payment_methods.get(payment_method or "")
        fingerprint = ((pm or {}).get("card") or {}).get("fingerprint")
        return _CARDS_BY_FINGERPRINT.get(fingerprint) if fingerprint else None

    def _would_pay(self, payment_method: str | None) -> bool:
        """Whether charging this payment method succeeds (no side effects)."""
        found = self._card_of(payment_method)
        return found is not None and found[0] not in CHARGE_FAILS

    def _new_payment_intent(self, customer: str, amount: int, currency: str, payment_method: str | None
                            ) -> JSONDict:
        intent = shape("payment_intent")
        intent_id = self._next_id("pi_fake")
        intent.update(
            id=intent_id, amount=amount, amount_received=0, currency=currency, customer=customer,
            created=self._billing_now(), client_secret=f"{intent_id}_secret_fake{self._counters['pi_fake']:05d}",
            payment_method=payment_method, status="requires_confirmation" if payment_method else
            "requires_payment_method", last_payment_error=None, latest_charge=None, next_action=None,
            canceled_at=None, transfer_data=None, processing=None, shipping=None,
        )
        self._payment_intents[intent_id] = intent
        return intent

    def _new_setup_intent(self, customer: str) -> JSONDict:
        intent = shape("setup_intent")
        intent_id = self._next_id("seti_fake")
        intent.update(id=intent_id, customer=customer, created=self._billing_now(), last_setup_error=None,
                      client_secret=f"{intent_id}_secret_fake{self._counters['seti_fake']:05d}",
                      status="requires_payment_method", next_action=None)
        self._setup_intents[intent_id] = intent
        return intent

    def _charge(self, invoice: JSONDict, intent: JSONDict, payment_method: str | None) -> JSONDict | None:
        """Charge the payment method for the intent: charge.succeeded or charge.failed."""
        if payment_method is None:
            intent["last_payment_error"] = {"type": "invalid_request_error", "code": "payment_method_missing",
                                            "message": "The customer has no default payment method."}
            return None
        paid = self._would_pay(payment_method)
        found = self._card_of(payment_method)
        card = found[1] if found else None
        charge = shape("charge")
        charge.pop("invoice", None)  # 2025-03-31.basil on: the link is the invoice payment's
        charge_id = self._next_id("ch_fake")
        code, decline_code, message = _DECLINE
        charge.update(
            id=charge_id, amount=intent["amount"], amount_captured=intent["amount"] if paid else 0,
            amount_refunded=0, currency=intent["currency"], customer=intent["customer"], created=self._billing_now(),
            description="Subscription payment", payment_intent=intent["id"],
            payment_method=payment_method, status="succeeded" if paid else "failed", paid=paid, captured=paid,
            failure_code=None if paid else code, failure_message=None if paid else message,
            balance_transaction=None, receipt_url=None, source=None, review=None, transfer_data=None,
            outcome={"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                     "network_status": "approved_by_network" if paid else "declined_by_network",
                     "reason": None if paid else decline_code, "risk_level": "normal",
                     "seller_message": "Payment complete." if paid else "The bank did not return any further details.",
                     "type": "authorized" if paid else "issuer_declined"},
            refunds={"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{charge_id}/refunds"},
            metadata={}, billing_details={"address": None, "email": None, "name": None, "phone": None,
                                          "tax_id": None},
            payment_method_details={"type": "card", "card": {
                "brand": card.brand if card else None, "last4": card.number[-4:] if card else None,
                "country": card.country if card else None, "funding": card.funding if card else None}},
        )
        self._charges[charge_id] = charge
        intent.update(latest_charge=charge_id, status="succeeded" if paid else "requires_payment_method",
                      amount_received=intent["amount"] if paid else 0,
                      last_payment_error=None if paid else {"type": "card_error", "code": code,
                                                            "decline_code": decline_code, "message": message})
        self._emit("charge.succeeded" if paid else "charge.failed", charge)
        return charge
