"""FakeProcessor: Stripe in memory, for tests and the local stack.

It behaves like Stripe's test mode where the billing code can tell the
difference: deterministic ids, Stripe's idempotency semantics, Stripe's test
payment methods with stable fingerprints, immediate tax-location validation,
meter events deduplicated by identifier, v2 meter event sessions that expire,
and thin `v1.billing.meter.error_report_triggered` events. It records every
call it receives and fails on demand (`add_fault`), so tests can prove what
was sent and what happens when Stripe misbehaves.

One lock guards all state: the local stack's functions call one shared Fake
from many threads (see rpc.py), and a test asserting on `snapshot()` must see
a consistent picture. The state and the path every call takes are core.py's;
each resource's calls are a mixin of their own (customers.py,
payment_methods.py, meters.py, promotions.py; the billing resources build on
one another: catalog.py, invoices.py, entitlements.py, subscriptions.py,
test_clock.py, sessions.py; listing.py lists them as Stripe's list endpoints
do, dashboard.py changes them as the Dashboard does).

Like Stripe, every change the Fake makes records the event it causes, in
order (events.py); the local stack delivers them, signed, to its webhook
route (control.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from billing.processor.base import JSONDict, check_object_type
from devstack.fake_stripe.cards import TEST_CARDS
from devstack.fake_stripe.customers import CustomersMixin
from devstack.fake_stripe.dashboard import DashboardMixin
from devstack.fake_stripe.events import changed
from devstack.fake_stripe.invoices import CHARGE_FAILS
from devstack.fake_stripe.meter_adjustments import MeterAdjustmentsMixin
from devstack.fake_stripe.meters import MetersMixin
from devstack.fake_stripe.payment_methods import PaymentMethodsMixin
from devstack.fake_stripe.promotions import PromotionsMixin


# DashboardMixin builds on ListingMixin, which builds on SessionsMixin and the billing resources.
class FakeProcessor(CustomersMixin, PaymentMethodsMixin, MetersMixin, MeterAdjustmentsMixin, PromotionsMixin,
                    DashboardMixin):
    """In-memory Stripe. Thread-safe; every result is a deep copy."""

    name = "fake"

    # -- test and local-stack controls (not part of the Processor interface) --------

    def reset(self) -> None:
        """Forget everything: objects, counters, calls, faults, meter events."""
        with self._lock:
            self._init_state()

    def add_fault(
        self,
        operation: str,
        status: int,
        code: str | None = None,
        times: int = 1,
        message: str | None = None,
        *,
        after: bool = False,
        crash: bool = False,
        skip: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` calls of `operation` fail (FIFO per operation),
        after `skip` calls that go through (a fault half way through a run).

        `status` 429 or 5xx is transient, other 4xx permanent; NETWORK_FAULT (0)
        is a connection failure, or a timeout with code="timeout". With
        `after=True` the call takes effect first and only its response is lost
        (the case idempotency keys exist for): a retry with the same key gets
        the original result. With `crash=True` the call takes effect and then
        the caller dies (ProcessCrash; `status` is not used): the crash
        between the Stripe call and the DynamoDB write. With `delay` the call
        waits that many seconds before it runs (other calls go on meanwhile);
        `status` SLOW (200) is a slow answer and nothing else.
        """
        with self._lock:
            self._faults.add(operation, status, code, times, message, after=after, crash=crash, skip=skip,
                             delay=delay)

    def clear_faults(self) -> None:
        """Forget every fault still queued (those no call met)."""
        with self._lock:
            self._faults.clear()

    def put_object(self, obj: JSONDict) -> None:
        """Seed or overwrite an object (e.g. a subscription or invoice fixture)
        so retrieve_object returns it, as if it had been created on Stripe."""
        object_type = str(obj.get("object", ""))
        object_id = str(obj.get("id", ""))
        if object_type == "invoice_payment" and object_id:  # listed, never retrieved alone
            with self._lock:
                self._invoice_payments[object_id] = copy.deepcopy(obj)
            return
        check_object_type(object_type)
        if not object_id:
            raise ValueError("put_object: the object needs an id")
        with self._lock:
            stored = copy.deepcopy(obj)
            if object_type == "customer":
                if stored.get("deleted"):
                    self._deleted_customers.add(object_id)
                    self._customers.pop(object_id, None)
                else:
                    self._customers[object_id] = stored
                    self._deleted_customers.discard(object_id)
            elif object_type == "payment_method":
                self._payment_methods[object_id] = stored
            elif object_type == "coupon":
                self._coupons[object_id] = stored
            elif object_type == "promotion_code":
                self._promotion_codes[object_id] = stored
            elif object_type in self._billing_stores():
                self._billing_stores()[object_type][object_id] = stored
            else:
                self._other_objects[(object_type, object_id)] = stored

    @property
    def calls(self) -> list[JSONDict]:
        """Every interface call received, in order: {operation, args, idempotency_key?, error?}."""
        with self._lock:
            return copy.deepcopy(self._calls)

    def snapshot(self) -> JSONDict:
        """What the Fake holds and received, JSON-able, for tests and /_local routes."""
        with self._lock:
            return {
                "meter_events": self._meter_event_list(),
                "meter_event_duplicates": dict(self._meter_duplicates),
                "meter_event_count": len(self._meter_events),
                "canceled_meter_event_count": len(self._meter_adjustments),
                "duplicate_count": sum(self._meter_duplicates.values()),
                "customers": len(self._customers),
                "deleted_customers": len(self._deleted_customers),
                "payment_methods": len(self._payment_methods),
                "coupons": len(self._coupons),
                "promotion_codes": len(self._promotion_codes),
                "products": len(self._products),
                "prices": len(self._prices),
                "subscriptions": len(self._subscriptions),
                "invoices": len(self._invoices),
                "charges": len(self._charges),
                "events": len(self._events),
                "billing_now": self._billing_now(),
                "v2_events": list(self._v2_events),
                "pending_faults": self._faults.pending(),
                "calls": copy.deepcopy(self._calls),
            }

    # -- any object -------------------------------------------------------------------

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        check_object_type(object_type)

        def retrieve() -> JSONDict:
            if object_type == "customer":
                return self._get_customer(object_id)
            if object_type == "entitlements.active_entitlement_summary":
                if object_id not in self._customers:
                    raise self._missing("customer", object_id)
                return self._entitlement_summary(object_id)
            store: dict[str, JSONDict] | None = {
                "payment_method": self._payment_methods,
                "coupon": self._coupons,
                "promotion_code": self._promotion_codes,
                **self._billing_stores(),
            }.get(object_type)
            found = store.get(object_id) if store is not None else self._other_objects.get((object_type, object_id))
            if found is None:
                raise self._missing(object_type, object_id)
            return found

        return self._run("retrieve_object", {"object_type": object_type, "object_id": object_id}, retrieve)

    def _billing_stores(self) -> dict[str, dict[str, JSONDict]]:
        return {"price": self._prices, "product": self._products, "subscription": self._subscriptions,
                "invoice": self._invoices, "charge": self._charges, "checkout.session": self._checkout_sessions}

    # -- the event log (events.py): read by the stack's delivery loop and by tests ----

    def events_since(self, position: int) -> list[JSONDict]:
        """The events from `position` (0-based) on, in order."""
        with self._lock:
            return self._events.since(position)

    def event_count(self) -> int:
        with self._lock:
            return len(self._events)

    def event_page(self, *, starting_after: str | None = None, limit: int = 100,
                   types: frozenset[str] | None = None) -> tuple[list[JSONDict], bool]:
        """A page of the log, oldest first, after the event `starting_after` (KeyError if unknown)."""
        with self._lock:
            return self._events.page(starting_after=starting_after, limit=limit, types=types)

    def on_event(self, listener: Callable[[], None] | None) -> None:
        """Call `listener` (with the Fake's lock held: keep it short) after each recorded event."""
        with self._lock:
            self._events.on_append = listener

    # -- what a customer does on Stripe's Checkout page ------------------------------

    def complete_checkout_session(self, session_id: str, payment_method: str = "pm_card_visa") -> JSONDict:
        """Play the customer paying on the Checkout page with a test card: the
        card is attached, and what the session's mode makes is made (a
        subscription, a payment, a saved payment method), then
        checkout.session.completed. A declined card leaves the session open
        (ProcessorFailure, 402). Returns the session and where Stripe sends the
        customer back (`redirect`: success_url with the session id)."""
        with self._lock:
            session = self._checkout_sessions.get(session_id)
            if session is None:
                raise self._missing("checkout.session", session_id)
            if session["status"] != "open" or session["expires_at"] <= self._billing_now():
                raise self._error(400, "This Checkout Session is no longer active.", param="session")
            card = TEST_CARDS.get(payment_method)
            if card is None:
                raise self._missing("payment_method", payment_method)
            if card.decline is not None or (session["mode"] != "setup" and payment_method in CHARGE_FAILS
                                            and not self._checkout_data[session_id].get("trial_period_days")):
                code, _decline, message = card.decline or ("card_declined", "generic_decline",
                                                           "Your card was declined.")
                raise self._error(402, message, code=code, error_type="card_error")
            customer_id = str(session["customer"])
            pm = self._new_payment_method(card)
            pm["customer"] = customer_id
            self._emit("payment_method.attached", pm)
            before = copy.deepcopy(session)
            if session["mode"] == "subscription":
                data = self._checkout_data[session_id]
                params: JSONDict = {"customer": customer_id, "default_payment_method": pm["id"],
                                    "items": [{"price": p["id"], "quantity": q}
                                              for p, q in self._checkout_items[session_id]],
                                    "payment_behavior": "error_if_incomplete",
                                    "metadata": dict(data.get("metadata") or {})}
                if data.get("trial_period_days"):
                    params["trial_period_days"] = data["trial_period_days"]
                sub = self._create_subscription(params)
                session.update(subscription=sub["id"], invoice=sub["latest_invoice"],
                               payment_status="paid" if sub["status"] == "active" else "no_payment_required")
            elif session["mode"] == "setup":
                intent = self._new_setup_intent(customer_id)
                intent.update(status="succeeded", payment_method=pm["id"])
                session["setup_intent"] = intent["id"]
            else:
                amount = int(session["amount_total"] or 0)
                intent = self._new_payment_intent(customer_id, amount, str(session["currency"]), pm["id"])
                intent.update(status="succeeded", amount_received=amount)
                session.update(payment_intent=intent["id"], payment_status="paid")
            session.update(status="complete", customer_details={"email": (self._customers[customer_id] or {})
                                                                  .get("email"), "name": None, "address": None,
                                                                  "phone": None, "tax_exempt": "none",
                                                                  "tax_ids": [], "business_name": None,
                                                                  "individual_name": None})
            self._emit("checkout.session.completed", session, changed(before, session))
            redirect = str(session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session_id)
            return {"session": copy.deepcopy(session), "redirect": redirect}
