"""Subscriptions, the catalog, entitlements and the owner's billing summary
in-process (moto, the Fake, its events applied through reconcile as the
stack would): the rules that hold whatever the transport."""

from __future__ import annotations

from typing import Any

import pytest

from billing.catalog import queries as catalog
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.customers import create, payment_methods
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.tables import LedgerRow, SubscriptionRow
from billing.subscriptions import actions, listing, sessions, summary
from billing.webhooks import fetched
from devstack.fake_stripe import FakeProcessor
from tests.unit.webhook_delivery import Deliverer

API = Actor("api", "arn:aws:iam::123456789012:user/test")
DAY = 86400


@pytest.fixture
def hooks(fake: FakeProcessor) -> Deliverer:
    deliverer = Deliverer(fake)
    deliverer.deliver()  # the seeded catalog
    return deliverer


def _price(fake: FakeProcessor, lookup_key: str) -> dict[str, Any]:
    return next(p for p in fake.catalog()["prices"] if p["lookup_key"] == lookup_key)


def _customer(hooks: Deliverer, owner: str, card: str | None = "pm_card_visa") -> tuple[dict[str, Any], str | None]:
    body, _ = create.fetch_or_create("User", owner, CustomerAttrs(email=f"{owner}@example.com"), API)
    pm = payment_methods.attach(body["id"], card, API)[0]["id"] if card else None
    hooks.deliver()
    return body, pm


def _ledger(customer_id: str) -> list[str]:
    return [row.type for row in LedgerRow.query(f"customer#{customer_id}")]


def test_the_seeded_catalog_is_projected_and_listed_by_index(fake: FakeProcessor, hooks: Deliverer) -> None:
    pro = _price(fake, "pro_monthly")
    by_key, _ = catalog.list_prices(active=None, product=None, lookup_key="pro_monthly", limit=10, cursor=None)
    assert [p["id"] for p in by_key] == [pro["id"]]
    assert by_key[0]["unit_amount"] == 2900 and by_key[0]["recurring_interval"] == "month"
    of_product, _ = catalog.list_prices(active=True, product=pro["product"], lookup_key=None, limit=10, cursor=None)
    assert {p["lookup_key"] for p in of_product} == {"pro_monthly", "pro_yearly"}
    first, cursor = catalog.list_prices(active=True, product=None, lookup_key=None, limit=4, cursor=None)
    rest, end = catalog.list_prices(active=True, product=None, lookup_key=None, limit=4, cursor=cursor)
    assert len(first) == 4 and len(rest) == 2 and end is None
    assert len({p["id"] for p in first + rest}) == 6
    assert catalog.get_product(pro["product"])["name"] == "Pro"
    with pytest.raises(ValidationFailed):  # a cursor of another list
        catalog.list_prices(active=None, product=pro["product"], lookup_key=None, limit=4, cursor=cursor)


def test_create_with_a_card_is_active_with_its_entitlements_in_the_owners_summary(fake: FakeProcessor,
                                                                               hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-1")
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "starter_monthly")["id"], 1)], default_payment_method=pm,
        payment_behavior="allow_incomplete"), API)
    assert (created["status"], created["client_secret"], created["customer_id"]) == ("active", None, customer["id"])
    assert "subscription.created" in _ledger(customer["id"])
    outcomes = hooks.deliver()
    assert set(outcomes.values()) <= {"processed", "stale"}
    answer = summary.billing("User", "u-1")
    assert [(s["id"], s["status"], s["product_name"]) for s in answer["subscriptions"]] == [
        (created["id"], "active", "Starter")]
    assert answer["entitlements"] == ["api_access", "reports"] and answer["delinquent"] is False
    assert summary.entitlements("User", "u-1") == {"features": ["api_access", "reports"]}
    invoices, _ = listing.list_invoices(customer_id=None, status="paid", subscription=created["id"], limit=10,
                                        cursor=None)
    charges, _ = listing.list_charges(customer_id=customer["id"], subscription=created["id"], limit=10, cursor=None)
    assert [i["amount_paid"] for i in invoices] == [900] and [c["amount"] for c in charges] == [900]
    with pytest.raises(NotFound):
        summary.billing("User", "nobody")


def test_default_incomplete_answers_the_client_secret_and_keeps_it_off_the_row(fake: FakeProcessor,
                                                                            hooks: Deliverer) -> None:
    customer, _ = _customer(hooks, "u-2", card=None)
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "pro_monthly")["id"], 2)]), API)
    assert created["status"] == "incomplete" and created["client_secret_type"] == "payment_intent"
    assert created["client_secret"].startswith("pi_fake_")
    row = SubscriptionRow.get(created["id"])
    assert isinstance(row.data["latest_invoice"], str) and "secret" not in str(row.data)
    trial = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "pro_monthly")["id"], 1)], trial_period_days=14), API)
    assert (trial["status"], trial["client_secret_type"]) == ("trialing", "setup_intent")


def test_a_trial_that_ends_with_a_declined_card_turns_past_due_and_delinquent(fake: FakeProcessor,
                                                                           hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-3", card="pm_card_chargeCustomerFail")
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "pro_monthly")["id"], 1)], trial_period_days=7, default_payment_method=pm), API)
    hooks.deliver()
    assert summary.billing("User", "u-3")["subscriptions"][0]["status"] == "trialing"
    fake.advance(8 * DAY)
    hooks.deliver()
    answer = summary.billing("User", "u-3")
    assert answer["subscriptions"][0]["status"] == "past_due" and answer["delinquent"] is True
    assert answer["customer"]["data"]["delinquent"] is True
    failed, _ = listing.list_charges(customer_id=None, subscription=created["id"], limit=10, cursor=None)
    assert [c["status"] for c in failed] == ["failed"]


def test_an_action_the_status_forbids_is_409_before_stripe_is_called(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-4")
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "starter_monthly")["id"], 1)], default_payment_method=pm,
        payment_behavior="allow_incomplete"), API)
    calls = len(fake.calls)
    for action in (lambda: actions.resume(created["id"], actor=API), lambda: actions.unpause(created["id"], actor=API)):
        with pytest.raises(Conflict) as refused:
            action()
        assert refused.value.error_type == "invalid_state" and refused.value.details["status"] == "active"
    assert len(fake.calls) == calls
    canceled = actions.cancel(created["id"], at_period_end=False, actor=API)
    assert canceled["status"] == "canceled"
    with pytest.raises(Conflict) as again:
        actions.swap(created["id"], price=_price(fake, "pro_monthly")["id"], quantity=None, item=None,
                     proration_behavior="none", actor=API)
    assert again.value.details == {"subscription_id": created["id"], "status": "canceled", "action": "swap"}
    hooks.deliver()
    assert summary.billing("User", "u-4")["subscriptions"] == [] and summary.entitlements("User", "u-4") == {
        "features": []}


def test_a_webhook_newer_than_the_request_is_not_overwritten(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-5")
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "starter_monthly")["id"], 1)], default_payment_method=pm,
        payment_behavior="allow_incomplete"), API)
    hooks.deliver()
    row = SubscriptionRow.get(created["id"])
    row.last_stripe_event_ts = int(row.last_stripe_event_ts) + 3600  # a webhook from the future applied
    row.save()
    scheduled = actions.cancel(created["id"], at_period_end=True, actor=API)
    # The row's watermark is past the request: the processor was asked again, and its state recorded.
    assert scheduled["cancel_at_period_end"] is True
    assert [c["operation"] for c in fake.calls][-2:] == ["update_subscription", "retrieve_object"]


def test_sync_applies_what_the_processor_has_when_no_webhook_came(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer, _ = _customer(hooks, "u-6", card=None)
    session = sessions.checkout(customer["id"], sessions.CheckoutRequest(
        mode="subscription", success_url="https://app.example.com/done?s={CHECKOUT_SESSION_ID}",
        items=((_price(fake, "pro_yearly")["id"], 1),)))
    assert session["url"].startswith("https://checkout.stripe.com/") and session["expires_at"] > 0
    done = fake.complete_checkout_session(session["id"], "pm_card_visa")
    assert done["redirect"] == f"https://app.example.com/done?s={session['id']}"
    hooks.skip()  # the webhooks have not arrived yet
    with pytest.raises(NotFound):
        actions.load(done["session"]["subscription"])
    synced = fetched.sync_customer(customer["id"], API)
    assert [s["status"] for s in synced["subscriptions"]] == ["active"]
    assert len(synced["payment_methods"]) == 1
    assert summary.billing("User", "u-6")["subscriptions"][0]["product_name"] == "Pro"


def test_checkout_completed_links_the_subscription_before_its_own_events(fake: FakeProcessor,
                                                                        hooks: Deliverer) -> None:
    customer, _ = _customer(hooks, "u-7", card=None)
    session = sessions.checkout(customer["id"], sessions.CheckoutRequest(
        mode="subscription", success_url="https://app.example.com/done", items=((_price(fake, "pro_monthly")["id"],
                                                                                  3),)))
    done = fake.complete_checkout_session(session["id"])
    outcomes = hooks.deliver(types={"checkout.session.completed"})
    assert list(outcomes.values()) == ["processed"]
    sub = listing.get_subscription(done["session"]["subscription"])
    assert (sub["customer_id"], sub["quantity"], sub["status"]) == (customer["id"], 3, "active")
    assert _ledger(customer["id"])[-1] == "checkout.session.completed"


def test_checkout_completed_after_a_newer_subscription_event_is_still_recorded(fake: FakeProcessor,
                                                                              hooks: Deliverer) -> None:
    customer, _ = _customer(hooks, "u-7b", card=None)
    session = sessions.checkout(customer["id"], sessions.CheckoutRequest(
        mode="subscription", success_url="https://app.example.com/done", items=((_price(fake, "pro_monthly")["id"],
                                                                                  1),)))
    done = fake.complete_checkout_session(session["id"])
    checkout_events = [e for e in hooks.pending() if e["type"] == "checkout.session.completed"]
    hooks.deliver(types={e["type"] for e in hooks.pending()} - {"checkout.session.completed"})
    fake.advance(60)  # the subscription moves on: its own event is newer than the Checkout's
    subscription_id = done["session"]["subscription"]
    actions.cancel(subscription_id, at_period_end=True, actor=API)
    hooks.deliver()
    assert listing.get_subscription(subscription_id)["cancel_at_period_end"] is True
    (late,) = checkout_events
    assert Deliverer.apply(late) == "processed"
    # The newer state stays; the Checkout has its ledger row all the same.
    assert listing.get_subscription(subscription_id)["cancel_at_period_end"] is True
    assert _ledger(customer["id"])[-1] == "checkout.session.completed"


def test_a_swap_with_always_invoice_bills_the_proration_now(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-8")
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "starter_monthly")["id"], 1)], default_payment_method=pm,
        payment_behavior="allow_incomplete"), API)
    fake.advance(15 * DAY)
    swapped = actions.swap(created["id"], price=_price(fake, "pro_monthly")["id"], quantity=2, item=None,
                           proration_behavior="always_invoice", actor=API)
    assert (swapped["price_id"], swapped["quantity"]) == (_price(fake, "pro_monthly")["id"], 2)
    hooks.deliver()
    invoices, _ = listing.list_invoices(customer_id=customer["id"], status=None, subscription=created["id"],
                                        limit=10, cursor=None)
    update = next(i for i in invoices if i["billing_reason"] == "subscription_update")
    # Half a month left: credit ~450 of Starter, charge ~2900 of two Pro seats.
    assert 2200 < update["amount_due"] < 2700 and update["status"] == "paid"
    assert summary.billing("User", "u-8")["entitlements"] == ["advanced_reports", "api_access",
                                                              "priority_support", "reports"]


def test_a_promotion_code_is_checked_then_discounts_the_first_invoice(fake: FakeProcessor, hooks: Deliverer) -> None:
    from billing.promotions import codes, coupons
    from billing.promotions.codes import NewPromotionCode
    from billing.promotions.coupons import NewCoupon

    customer, pm = _customer(hooks, "u-9")
    coupon = coupons.create(NewCoupon(percent_off=50.0, duration="once"), API)
    codes.create(NewPromotionCode(code="HALF", coupon=coupon["id"]), API)
    codes.create(NewPromotionCode(code="OFF", coupon=coupon["id"], active=False), API)
    with pytest.raises(ValidationFailed) as refused:
        actions.create(customer["id"], actions.NewSubscription(
            items=[(_price(fake, "pro_monthly")["id"], 1)], promotion_code="off", default_payment_method=pm), API)
    assert refused.value.details == {"promotion_code": "inactive"}
    assert not [c for c in fake.calls if c["operation"] == "create_subscription"]
    created = actions.create(customer["id"], actions.NewSubscription(
        items=[(_price(fake, "pro_monthly")["id"], 1)], promotion_code="half", default_payment_method=pm,
        payment_behavior="error_if_incomplete"), API)
    (sent,) = [c for c in fake.calls if c["operation"] == "create_subscription"]
    assert sent["args"]["params"]["discounts"] == [{"promotion_code": listing_codes("HALF")[0]["id"]}]
    hooks.deliver()
    (invoice,) = listing.list_invoices(customer_id=None, status=None, subscription=created["id"], limit=5,
                                       cursor=None)[0]
    assert (invoice["amount_due"], invoice["amount_paid"]) == (1450, 1450)


def listing_codes(code: str) -> list[dict[str, Any]]:
    from billing.promotions import listing as promotion_listing

    return promotion_listing.list_codes(active=True, code=code, coupon=None, sort="expires_at", order="asc",
                                        limit=5, cursor=None)[0]


def test_subscriptions_list_by_customer_status_and_price_with_cursors(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer, pm = _customer(hooks, "u-10")
    starter, pro = _price(fake, "starter_monthly")["id"], _price(fake, "pro_monthly")["id"]
    made = [actions.create(customer["id"], actions.NewSubscription(
        items=[(price, 1)], default_payment_method=pm, payment_behavior="allow_incomplete"), API)["id"]
        for price in (starter, pro, pro)]
    actions.cancel(made[0], at_period_end=False, actor=API)
    hooks.deliver()
    first, cursor = listing.list_subscriptions(customer_id=customer["id"], status=None, price=None, limit=2,
                                               cursor=None)
    rest, end = listing.list_subscriptions(customer_id=customer["id"], status=None, price=None, limit=2,
                                           cursor=cursor)
    assert [s["id"] for s in first + rest] == made[::-1] and end is None
    active_pro, _ = listing.list_subscriptions(customer_id=customer["id"], status="active", price=pro, limit=10,
                                               cursor=None)
    assert {s["id"] for s in active_pro} == set(made[1:])
    canceled, _ = listing.list_subscriptions(customer_id=None, status="canceled", price=starter, limit=10,
                                             cursor=None)
    assert [s["id"] for s in canceled] == [made[0]]
    with pytest.raises(ValidationFailed):
        listing.list_subscriptions(customer_id=None, status="active", price=None, limit=2, cursor=cursor)
