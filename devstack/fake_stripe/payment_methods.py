"""Payment methods in the Fake: Stripe's test cards attach (or are declined,
as in test mode), detach for good, and keep one fingerprint per card."""

from __future__ import annotations

import copy
from typing import cast

from billing.processor.base import JSONDict
from devstack.fake_stripe.cards import TEST_CARDS, TestCard
from devstack.fake_stripe.core import ADDRESS_KEYS, FakeCore, shape


class PaymentMethodsMixin(FakeCore):
    """The Processor interface's payment method calls."""

    def attach_payment_method(self, payment_method_id: str, *, customer_id: str, idempotency_key: str) -> JSONDict:
        def attach() -> JSONDict:
            card = TEST_CARDS.get(payment_method_id)
            existing = self._payment_methods.get(payment_method_id)
            if card is None and existing is None:
                raise self._missing("payment_method", payment_method_id)
            if customer_id not in self._customers:
                raise self._error(400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer")
            if card is not None:
                if card.decline is not None:
                    code, _decline_code, message = card.decline
                    raise self._error(402, message, code=code, param=None, error_type="card_error")
                pm = self._new_payment_method(card)
                pm["customer"] = customer_id
                self._emit("payment_method.attached", pm)
                return pm
            existing = cast(JSONDict, existing)  # not None: checked above
            if payment_method_id in self._spent_payment_methods:
                raise self._error(
                    400,
                    "This PaymentMethod was previously used without being attached to a Customer or was detached "
                    "from a Customer, and may not be used again.",
                    code="payment_method_unexpected_state",
                )
            if existing.get("customer") not in (None, customer_id):
                raise self._error(
                    400,
                    "The payment method you provided has already been attached to a customer.",
                    code="payment_method_unexpected_state",
                )
            existing["customer"] = customer_id
            self._emit("payment_method.attached", existing)
            return existing

        args = {"payment_method_id": payment_method_id, "customer_id": customer_id}
        return self._run("attach_payment_method", args, attach, idempotency_key=idempotency_key)

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> JSONDict:
        def detach() -> JSONDict:
            pm = self._payment_methods.get(payment_method_id)
            if pm is None:
                raise self._missing("payment_method", payment_method_id)
            owner = pm.get("customer")
            if owner is None:
                raise self._error(
                    400,
                    "The payment method you provided is not attached to a customer so detachment is impossible.",
                    code="payment_method_unexpected_state",
                )
            pm["customer"] = None
            self._spent_payment_methods.add(payment_method_id)
            self._emit("payment_method.detached", pm, {"customer": owner})
            # Stripe clears a default that pointed at the detached method.
            customer = self._customers.get(owner)
            settings = (customer or {}).get("invoice_settings") or {}
            if customer is not None and settings.get("default_payment_method") == payment_method_id:
                before = copy.deepcopy(customer)
                settings["default_payment_method"] = None
                self._emit("customer.updated", customer, {"invoice_settings": before["invoice_settings"]})
            return pm

        args = {"payment_method_id": payment_method_id}
        return self._run("detach_payment_method", args, detach, idempotency_key=idempotency_key)

    def retrieve_payment_method(self, payment_method_id: str) -> JSONDict:
        def retrieve() -> JSONDict:
            pm = self._payment_methods.get(payment_method_id)
            if pm is not None:
                return pm
            card = TEST_CARDS.get(payment_method_id)
            if card is not None and card.decline is None:
                # Test mode turns a pm_card_* id into a new, unattached PaymentMethod.
                return self._new_payment_method(card)
            raise self._missing("payment_method", payment_method_id)

        return self._run("retrieve_payment_method", {"payment_method_id": payment_method_id}, retrieve)

    def _new_payment_method(self, card: TestCard) -> JSONDict:
        pm = shape("payment_method")
        now = int(self._now())
        pm.update(
            id=self._next_id("pm_fake"),
            created=now,
            customer=None,
            metadata={},
            billing_details={
                "address": dict.fromkeys(ADDRESS_KEYS),
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
        )
        pm["card"].update(card.details(now))
        self._payment_methods[pm["id"]] = pm
        return pm
