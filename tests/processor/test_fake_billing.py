"""The Fake's billing resources and its event log, as Stripe's test mode
behaves: the seeded catalog, subscriptions and their statuses, trials,
invoices paid or failed by test cards, prorations, Checkout and portal
sessions, entitlements, the test clock, and the events each change records.
Interface calls run in process and through the RPC hop (`processor`)."""

from __future__ import annotations

from typing import Any

import pytest

from billing.processor.base import Processor
from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe import FakeProcessor

DAY = 86400


def price(fake: FakeProcessor, lookup_key: str) -> dict[str, Any]:
    return next(p for p in fake.catalog()["prices"] if p["lookup_key"] == lookup_key)


def types_since(fake: FakeProcessor, position: int) -> list[str]:
    return [e["type"] for e in fake.events_since(position)]


def customer_with_card(processor: Processor, card: str = "pm_card_visa") -> tuple[str, str]:
    customer = processor.create_customer(idempotency_key=f"c-{card}", email="ada@example.com", name=None,
                                         metadata={})
    pm = processor.attach_payment_method(card, customer_id=customer["id"], idempotency_key=f"a-{card}")
    return customer["id"], pm["id"]


def test_the_catalog_is_seeded_with_features_and_lookup_keys(fake: FakeProcessor) -> None:
    catalog = fake.catalog()
    assert [p["name"] for p in catalog["products"]] == ["Starter", "Pro", "Enterprise"]
    assert {p["lookup_key"] for p in catalog["prices"]} == {f"{n}_{i}" for n in ("starter", "pro", "enterprise")
                                                            for i in ("monthly", "yearly")}
    assert {p["recurring"]["interval"] for p in catalog["prices"]} == {"month", "year"}
    assert types_since(fake, 0) == ["product.created", "price.created", "price.created"] * 3
    added = fake.add_product("Add-on", features=["exports"], prices=[{"unit_amount": 500, "interval": "month",
                                                                      "lookup_key": "addon_monthly"}])
    assert added["product"]["default_price"] == added["prices"][0]["id"]
    with pytest.raises(ValueError, match="taken"):
        fake.add_product("Again", features=[], prices=[{"unit_amount": 1, "lookup_key": "addon_monthly"}])
    fake.reset()
    assert len(fake.catalog()["prices"]) == 6 and fake.event_count() == 9  # a reset seeds it again


def test_api_changes_record_their_events_once(processor: Processor, fake: FakeProcessor) -> None:
    start = fake.event_count()
    customer = processor.create_customer(idempotency_key="k", email="a@example.com", name=None, metadata={})
    processor.create_customer(idempotency_key="k", email="a@example.com", name=None, metadata={})  # replayed
    processor.update_customer(customer["id"], fields={"name": "Ada"})
    pm = processor.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="a")
    processor.update_customer(customer["id"], fields={"invoice_settings": {"default_payment_method": pm["id"]}})
    processor.detach_payment_method(pm["id"], idempotency_key="d")
    processor.delete_customer(customer["id"], idempotency_key="x")
    events = fake.events_since(start)
    assert [e["type"] for e in events] == ["customer.created", "customer.updated", "payment_method.attached",
                                           "customer.updated", "payment_method.detached", "customer.updated",
                                           "customer.deleted"]
    assert events[1]["data"]["previous_attributes"] == {"name": None}
    assert events[4]["data"]["previous_attributes"] == {"customer": customer["id"]}
    assert events[0]["request"]["idempotency_key"] == "k" and events[0]["id"].startswith("evt_fake_")
    page, more = fake.event_page(starting_after=events[2]["id"], limit=2)
    assert [e["id"] for e in page] == [events[3]["id"], events[4]["id"]] and more


def test_a_subscription_paid_by_card_is_active_and_renews(processor: Processor, fake: FakeProcessor) -> None:
    customer, pm = customer_with_card(processor)
    start = fake.event_count()
    sub = processor.create_subscription(idempotency_key="s", params={
        "customer": customer, "items": [{"price": price(fake, "pro_monthly")["id"]}],
        "default_payment_method": pm, "payment_behavior": "allow_incomplete"})
    assert sub["status"] == "active" and isinstance(sub["latest_invoice"], str)
    assert types_since(fake, start) == [
        "customer.subscription.created", "invoice.created", "invoice.finalized", "charge.succeeded", "invoice.paid",
        "customer.subscription.updated", "entitlements.active_entitlement_summary.updated"]
    summary = fake.retrieve_object("entitlements.active_entitlement_summary", customer)
    assert {e["lookup_key"] for e in summary["entitlements"]["data"]} == {
        "reports", "api_access", "advanced_reports", "priority_support"}
    period_end = sub["items"]["data"][0]["current_period_end"]
    renewal = fake.event_count()
    fake.advance(31 * DAY)
    renewed = fake.retrieve_object("subscription", sub["id"])
    assert renewed["items"]["data"][0]["current_period_start"] == period_end
    assert "invoice.paid" in types_since(fake, renewal)


def test_a_trial_ends_with_a_declined_card_past_due_and_the_customer_delinquent(processor: Processor,
                                                                              fake: FakeProcessor) -> None:
    customer, pm = customer_with_card(processor, "pm_card_chargeCustomerFail")
    sub = processor.create_subscription(idempotency_key="t", params={
        "customer": customer, "items": [{"price": price(fake, "starter_monthly")["id"]}], "trial_period_days": 7,
        "default_payment_method": pm})
    assert sub["status"] == "trialing" and sub["trial_end"] - sub["trial_start"] == 7 * DAY
    start = fake.event_count()
    fake.advance(5 * DAY)
    assert types_since(fake, start) == ["customer.subscription.trial_will_end"]
    fake.advance(3 * DAY)
    after = types_since(fake, start)
    assert after[1:] == ["invoice.created", "invoice.finalized", "charge.failed", "invoice.payment_failed",
                         "customer.updated", "customer.subscription.updated"]
    assert fake.retrieve_object("subscription", sub["id"])["status"] == "past_due"
    assert fake.retrieve_customer(customer)["delinquent"] is True


def test_payment_behaviors(processor: Processor, fake: FakeProcessor) -> None:
    customer, pm = customer_with_card(processor, "pm_card_chargeCustomerFail")
    params = {"customer": customer, "items": [{"price": price(fake, "starter_monthly")["id"]}],
              "default_payment_method": pm}
    with pytest.raises(ProcessorFailure) as declined:
        processor.create_subscription(idempotency_key="e", params={**params, "payment_behavior": "error_if_incomplete"})
    assert (declined.value.status, declined.value.code) == (402, "card_declined")
    incomplete = processor.create_subscription(idempotency_key="d", params={
        **params, "payment_behavior": "default_incomplete", "expand": ["latest_invoice.confirmation_secret"]})
    assert incomplete["status"] == "incomplete"
    assert incomplete["latest_invoice"]["confirmation_secret"]["client_secret"].startswith("pi_fake_")
    assert "confirmation_secret" not in fake.retrieve_object("invoice", incomplete["latest_invoice"]["id"])
    fake.advance(DAY)
    assert fake.retrieve_object("subscription", incomplete["id"])["status"] == "incomplete_expired"


def test_swap_prorations_cancel_and_pause(processor: Processor, fake: FakeProcessor) -> None:
    customer, pm = customer_with_card(processor)
    sub = processor.create_subscription(idempotency_key="s", params={
        "customer": customer, "items": [{"price": price(fake, "starter_monthly")["id"]}],
        "default_payment_method": pm, "payment_behavior": "allow_incomplete"})
    item = sub["items"]["data"][0]["id"]
    fake.advance(10 * DAY)
    later = processor.update_subscription(sub["id"], idempotency_key="p", params={
        "items": [{"id": item, "quantity": 3}], "proration_behavior": "create_prorations"})
    assert later["latest_invoice"] == sub["latest_invoice"]  # billed on the next invoice
    now = processor.update_subscription(sub["id"], idempotency_key="n", params={
        "items": [{"id": item, "price": price(fake, "pro_monthly")["id"]}], "proration_behavior": "always_invoice"})
    invoice = fake.retrieve_object("invoice", now["latest_invoice"])
    assert invoice["billing_reason"] == "subscription_update" and invoice["status"] == "paid"
    assert all(line["parent"]["subscription_item_details"]["proration"] for line in invoice["lines"]["data"])
    scheduled = processor.update_subscription(sub["id"], idempotency_key="c", params={"cancel_at_period_end": True})
    assert scheduled["cancel_at"] == scheduled["items"]["data"][0]["current_period_end"]
    paused = processor.update_subscription(sub["id"], idempotency_key="z", params={
        "pause_collection": {"behavior": "void"}})
    assert paused["pause_collection"] == {"behavior": "void", "resumes_at": None}
    assert processor.update_subscription(sub["id"], idempotency_key="u", params={"pause_collection": ""})[
        "pause_collection"] is None
    fake.advance(31 * DAY)
    ended = fake.retrieve_object("subscription", sub["id"])
    assert ended["status"] == "canceled" and types_since(fake, 0)[-2:] == [
        "customer.subscription.deleted", "entitlements.active_entitlement_summary.updated"]
    with pytest.raises(ProcessorFailure):
        processor.cancel_subscription(sub["id"], idempotency_key="again", params={})
    assert [s["id"] for s in processor.list_subscriptions(customer_id=customer)] == [sub["id"]]


def test_checkout_and_the_portal(processor: Processor, fake: FakeProcessor) -> None:
    customer = processor.create_customer(idempotency_key="k", email="a@example.com", name=None, metadata={})["id"]
    session = processor.create_checkout_session(idempotency_key="cs", params={
        "customer": customer, "mode": "subscription", "success_url": "https://x.example/ok?id={CHECKOUT_SESSION_ID}",
        "line_items": [{"price": price(fake, "enterprise_yearly")["id"], "quantity": 1}],
        "subscription_data": {"trial_period_days": 14}})
    assert session["url"] == f"https://checkout.stripe.com/c/pay/{session['id']}" and session["status"] == "open"
    with pytest.raises(ProcessorFailure) as declined:
        fake.complete_checkout_session(session["id"], "pm_card_chargeDeclined")
    assert declined.value.status == 402
    done = fake.complete_checkout_session(session["id"], "pm_card_visa")
    assert done["redirect"] == f"https://x.example/ok?id={session['id']}"
    sub = fake.retrieve_object("subscription", done["session"]["subscription"])
    assert sub["status"] == "trialing" and sub["default_payment_method"]
    assert types_since(fake, 0)[-1] == "checkout.session.completed"
    with pytest.raises(ProcessorFailure):
        fake.complete_checkout_session(session["id"])  # complete already
    portal = processor.create_portal_session(idempotency_key="ps", params={
        "customer": customer, "return_url": "https://x.example/account",
        "flow_data": {"type": "subscription_cancel", "subscription_cancel": {"subscription": sub["id"]}}})
    assert portal["url"].startswith("https://billing.stripe.com/p/session/")
    assert portal["flow"]["subscription_cancel"]["subscription"] == sub["id"]
    with pytest.raises(ProcessorFailure) as foreign:
        processor.create_portal_session(idempotency_key="ps2", params={
            "customer": customer, "flow_data": {"type": "subscription_update",
                                                "subscription_update": {"subscription": "sub_nope"}}})
    assert foreign.value.code == "resource_missing"
