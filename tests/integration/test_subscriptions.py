"""Subscriptions, Checkout, the customer portal, the catalog and the owner's
billing, end to end through HTTP against the local stack: the Fake behaves
like Stripe's test mode (its webhooks come back signed; its test clock moves
periods and trials on), and every answer is the stack's own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.webhook_helpers import fake, settled

pytestmark = pytest.mark.integration
DAY = 86400


def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def owner(api: Client, owner_id: str | None = None) -> tuple[str, dict[str, Any]]:
    owner_id = owner_id or str(uuid.uuid4())
    customer = ok(api.put(f"/v1/owners/User/{owner_id}/customer", {"email": f"{owner_id[:8]}@example.com"}), 201)
    return owner_id, customer


def price_id(api: Client, lookup_key: str) -> str:
    (price,) = ok(api.get("/v1/prices", params={"lookup_key": lookup_key}))["data"]
    return str(price["id"])


def billing(api: Client, owner_id: str) -> dict[str, Any]:
    return ok(api.get(f"/v1/owners/User/{owner_id}/billing"))


def advance(api: Client, seconds: int) -> None:
    ok(api.post("/_local/fake-stripe/advance", {"seconds": seconds}))
    settled(api)


def subscribe(api: Client, customer_id: str, lookup_key: str, **extra: Any) -> dict[str, Any]:
    body = {"items": [{"price": price_id(api, lookup_key)}], "payment_behavior": "allow_incomplete", **extra}
    return ok(api.post(f"/v1/customers/{customer_id}/subscriptions", body), 201)


def card(api: Client, customer_id: str, test_card: str = "pm_card_visa") -> str:
    return str(ok(api.post(f"/v1/customers/{customer_id}/payment-methods", {"payment_method_id": test_card}),
                  201)["id"])


def test_the_seeded_catalog_is_listed_and_more_can_be_added(api: Client) -> None:
    prices = ok(api.get("/v1/prices", params={"limit": "100", "active": "true"}))["data"]
    seeded = {p["lookup_key"]: p for p in prices if p["lookup_key"] and p["lookup_key"].endswith(("_monthly",
                                                                                                  "_yearly"))}
    assert {"starter_monthly", "starter_yearly", "pro_monthly", "pro_yearly", "enterprise_monthly",
            "enterprise_yearly"} <= set(seeded)
    pro = seeded["pro_yearly"]
    assert (pro["unit_amount"], pro["currency"], pro["recurring_interval"]) == (29000, "usd", "year")
    assert pro["processor_id"] == pro["id"] and pro["id"].startswith("price_")
    product = ok(api.get(f"/v1/products/{pro['product_id']}"))
    assert product["name"] == "Pro" and "Advanced Reports" in product["features"]
    assert ok(api.get(f"/v1/prices/{pro['id']}")) == pro
    by_product = ok(api.get("/v1/prices", params={"product": pro["product_id"]}))["data"]
    assert {p["lookup_key"] for p in by_product} == {"pro_monthly", "pro_yearly"}
    assert_error(api.get("/v1/prices/price_nope"), 404, "not_found")

    key = f"addon_{uuid.uuid4().hex[:8]}"
    made = ok(api.post("/_local/fake-stripe/products", {"name": "Add-on", "features": ["exports"],
                                                         "prices": [{"unit_amount": 500, "interval": "month",
                                                                     "lookup_key": key}]}), 201)
    settled(api)  # its product.created and price.created webhooks
    assert price_id(api, key) == made["prices"][0]["id"]


def test_owner_to_checkout_to_active_subscription_to_entitlements(api: Client) -> None:
    owner_id, customer = owner(api)
    assert_error(api.get(f"/v1/owners/User/{uuid.uuid4()}/billing"), 404, "not_found")
    assert ok(api.get(f"/v1/owners/User/{owner_id}/entitlements")) == {"features": []}

    session = ok(api.post(f"/v1/customers/{customer['id']}/checkout-sessions", {
        "mode": "subscription", "items": [{"price": price_id(api, "pro_monthly"), "quantity": 2}],
        "success_url": "https://app.example.com/billing/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://app.example.com/billing", "allow_promotion_codes": True}), 201)
    assert set(session) == {"id", "url", "expires_at"} and session["url"].startswith("https://checkout.stripe.com/")

    # The customer pays on Stripe's page and is sent back; the app syncs before the webhooks come.
    with_hooks_held = ok(api.post("/_local/fake-stripe/delivery", {"hold": True}))
    assert with_hooks_held["held"] is True
    try:
        paid = ok(api.post(f"/_local/fake-stripe/checkout-sessions/{session['id']}/complete",
                           {"payment_method": "pm_card_visa"}))
        assert paid["redirect"] == f"https://app.example.com/billing/done?session={session['id']}"
        synced = ok(api.post(f"/v1/customers/{customer['id']}/sync"))
        (subscription,) = synced["subscriptions"]
        assert subscription["status"] == "active" and subscription["id"] == paid["session"]["subscription"]
        assert [pm["brand"] for pm in synced["payment_methods"]] == ["visa"]
        answer = billing(api, owner_id)
        assert [(s["id"], s["status"], s["product_name"], s["quantity"]) for s in answer["subscriptions"]] == [
            (subscription["id"], "active", "Pro", 2)]
    finally:
        ok(api.post("/_local/fake-stripe/delivery", {"hold": False}))
    settled(api)  # then Stripe's webhooks: checkout.session.completed, the entitlements, the invoice

    answer = billing(api, owner_id)
    assert answer["customer"]["id"] == customer["id"] and answer["delinquent"] is False
    assert answer["entitlements"] == ["advanced_reports", "api_access", "priority_support", "reports"]
    assert ok(api.get(f"/v1/owners/User/{owner_id}/entitlements")) == {"features": answer["entitlements"]}
    listed = ok(api.get("/v1/subscriptions", params={"customer_id": customer["id"]}))["data"]
    assert [(s["id"], s["status"], s["price_id"]) for s in listed] == [
        (subscription["id"], "active", price_id(api, "pro_monthly"))]
    (invoice,) = ok(api.get("/v1/invoices", params={"subscription": subscription["id"]}))["data"]
    assert (invoice["status"], invoice["amount_paid"], invoice["billing_reason"]) == ("paid", 5800,
                                                                                      "subscription_create")
    (charge,) = ok(api.get("/v1/charges", params={"subscription": subscription["id"]}))["data"]
    assert (charge["status"], charge["amount"], charge["customer_id"]) == ("succeeded", 5800, customer["id"])
    events = ok(api.get(f"/v1/customers/{customer['id']}/events", params={"limit": "100"}))["data"]
    assert "checkout.session.completed" in {e["type"] for e in events}

    portal = ok(api.post(f"/v1/customers/{customer['id']}/portal-sessions", {
        "return_url": "https://app.example.com/billing",
        "flow": {"type": "subscription_cancel", "subscription": subscription["id"]}}), 201)
    assert set(portal) == {"id", "url"} and portal["url"].startswith("https://billing.stripe.com/")
    assert_error(api.post(f"/v1/customers/{customer['id']}/portal-sessions",
                          {"flow": {"type": "subscription_update"}}), 422, "validation_error")
    assert_error(api.post(f"/v1/customers/{customer['id']}/checkout-sessions", {
        "mode": "setup", "items": [{"price": price_id(api, "pro_monthly")}],
        "success_url": "https://app.example.com/x"}), 422, "validation_error")


def test_a_swap_with_proration_bills_the_difference(api: Client) -> None:
    owner_id, customer = owner(api)
    pm = card(api, customer["id"])
    created = subscribe(api, customer["id"], "starter_monthly", default_payment_method=pm)
    assert created["status"] == "active" and created["client_secret"] is None
    advance(api, 15 * DAY)
    missing = api.post(f"/v1/subscriptions/{created['id']}/swap", {"price": price_id(api, "pro_monthly")})
    assert_error(missing, 422, "validation_error")  # proration_behavior is required
    swapped = ok(api.post(f"/v1/subscriptions/{created['id']}/swap", {
        "price": price_id(api, "pro_monthly"), "quantity": 2, "proration_behavior": "always_invoice"}))
    assert (swapped["price_id"], swapped["quantity"]) == (price_id(api, "pro_monthly"), 2)
    settled(api)
    invoices = ok(api.get("/v1/invoices", params={"subscription": created["id"]}))["data"]
    update = next(i for i in invoices if i["billing_reason"] == "subscription_update")
    lines = update["data"]["lines"]["data"]
    assert all(line["parent"]["subscription_item_details"]["proration"] for line in lines)
    credit, charge = sorted(line["amount"] for line in lines)
    assert credit < 0 < charge and update["amount_due"] == credit + charge and update["status"] == "paid"
    assert 0 < update["amount_due"] < 2 * 2900
    answer = billing(api, owner_id)
    assert [(s["product_name"], s["quantity"]) for s in answer["subscriptions"]] == [("Pro", 2)]
    assert "advanced_reports" in answer["entitlements"]
    ledger = ok(api.get(f"/v1/customers/{customer['id']}/events", params={"limit": "100"}))["data"]
    (swap_row,) = [e for e in ledger if e["type"] == "subscription.swapped"]
    assert swap_row["data"]["proration_behavior"] == "always_invoice" and swap_row["actor_type"] == "api"


def test_cancel_at_period_end_then_resume_then_cancel_now(api: Client) -> None:
    owner_id, customer = owner(api)
    pm = card(api, customer["id"])
    created = subscribe(api, customer["id"], "pro_yearly", default_payment_method=pm)
    resume_early = api.post(f"/v1/subscriptions/{created['id']}/resume")
    assert assert_error(resume_early, 409, "invalid_state")["error"]["details"]["status"] == "active"

    scheduled = ok(api.post(f"/v1/subscriptions/{created['id']}/cancel", {"at_period_end": True}))
    assert scheduled["cancel_at_period_end"] is True and scheduled["status"] == "active"
    settled(api)
    assert billing(api, owner_id)["subscriptions"][0]["cancel_at_period_end"] is True
    resumed = ok(api.post(f"/v1/subscriptions/{created['id']}/resume"))
    assert resumed["cancel_at_period_end"] is False
    settled(api)
    assert billing(api, owner_id)["subscriptions"][0]["cancel_at_period_end"] is False

    paused = ok(api.post(f"/v1/subscriptions/{created['id']}/pause", {"behavior": "mark_uncollectible"}))
    assert paused["pause_collection"] == "mark_uncollectible"
    assert_error(api.post(f"/v1/subscriptions/{created['id']}/pause"), 409, "invalid_state")
    assert ok(api.post(f"/v1/subscriptions/{created['id']}/unpause"))["pause_collection"] is None

    canceled = ok(api.post(f"/v1/subscriptions/{created['id']}/cancel", {"at_period_end": False}))
    assert canceled["status"] == "canceled"
    # Only the calls a swap makes: the webhook processor may still re-fetch
    # objects for the events the cancel caused, meanwhile.
    updates = len([c for c in fake_calls(api) if c["operation"] == "update_subscription"])
    refused = api.post(f"/v1/subscriptions/{created['id']}/swap", {"quantity": 3, "proration_behavior": "none"})
    assert assert_error(refused, 409, "invalid_state")["error"]["details"] == {
        "subscription_id": created["id"], "status": "canceled", "action": "swap"}
    # Refused before Stripe was called.
    assert len([c for c in fake_calls(api) if c["operation"] == "update_subscription"]) == updates
    settled(api)
    answer = billing(api, owner_id)
    assert answer["subscriptions"] == [] and answer["entitlements"] == []
    types = [e["type"] for e in ok(api.get(f"/v1/customers/{customer['id']}/events",
                                           params={"limit": "100"}))["data"] if e["actor_type"] == "api"]
    assert types[:6] == ["subscription.canceled", "subscription.unpaused", "subscription.paused",
                         "subscription.resumed", "subscription.cancel_scheduled", "subscription.created"]


def fake_calls(api: Client) -> list[dict[str, Any]]:
    return list(api.get("/_local/fake-stripe/calls").json()["data"])


def test_a_trial_that_ends_with_a_declined_card_turns_past_due_then_delinquent(api: Client) -> None:
    owner_id, customer = owner(api)
    pm = card(api, customer["id"], "pm_card_chargeCustomerFail")  # attaches; its charges fail
    ok(api.put(f"/v1/customers/{customer['id']}/default-payment-method", {"payment_method_id": pm}))
    trial = ok(api.post(f"/v1/customers/{customer['id']}/subscriptions", {
        "items": [{"price": price_id(api, "starter_monthly")}], "trial_period_days": 7}), 201)
    assert trial["status"] == "trialing" and trial["trial_end"] - trial["data"]["trial_start"] == 7 * DAY
    assert trial["client_secret"] is None  # a default payment method: nothing to collect
    settled(api)
    answer = billing(api, owner_id)
    assert [(s["status"], s["trial_end"]) for s in answer["subscriptions"]] == [("trialing", trial["trial_end"])]
    assert answer["entitlements"] == ["api_access", "reports"] and answer["delinquent"] is False

    advance(api, 8 * DAY)
    answer = billing(api, owner_id)
    assert answer["subscriptions"][0]["status"] == "past_due"
    assert answer["delinquent"] is True and answer["customer"]["data"]["delinquent"] is True
    assert answer["entitlements"] == ["api_access", "reports"]  # still entitled while past due
    (renewal,) = ok(api.get("/v1/invoices", params={"subscription": trial["id"], "status": "open"}))["data"]
    assert renewal["billing_reason"] == "subscription_cycle" and renewal["amount_due"] == 900
    (failed,) = ok(api.get("/v1/charges", params={"subscription": trial["id"]}))["data"]
    assert failed["status"] == "failed" and failed["data"]["failure_code"] == "card_declined"
    past_due = ok(api.get("/v1/subscriptions", params={"status": "past_due", "customer_id": customer["id"]}))
    assert [s["id"] for s in past_due["data"]] == [trial["id"]]


def test_idempotency_key_replays_and_refuses_reuse_and_posts_without_it_create_anew(api: Client,
                                                                                   stack: LocalStack) -> None:
    _, customer = owner(api)
    pm = card(api, customer["id"])
    body = {"items": [{"price": price_id(api, "starter_monthly")}], "default_payment_method": pm,
            "payment_behavior": "allow_incomplete"}
    key = {"Idempotency-Key": f"sub-{uuid.uuid4()}"}
    before = len([c for c in fake(stack).calls if c["operation"] == "create_subscription"])
    first = api.post(f"/v1/customers/{customer['id']}/subscriptions", body, headers=key)
    again = api.post(f"/v1/customers/{customer['id']}/subscriptions", body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201) and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len([c for c in fake(stack).calls if c["operation"] == "create_subscription"]) == before + 1
    reused = api.post(f"/v1/customers/{customer['id']}/subscriptions", {**body, "metadata": {"a": "b"}},
                      headers=key)
    assert_error(reused, 422, "idempotency_key_reused")
    ledger = ok(api.get(f"/v1/customers/{customer['id']}/events", params={"limit": "100"}))["data"]
    (created_row,) = [e for e in ledger if e["type"] == "subscription.created"]
    assert created_row["idempotency_key"] == key["Idempotency-Key"]

    # Without the header, as on Stripe: the same body twice is two coupons.
    coupon = {"percent_off": 10, "duration": "once"}
    one, two = api.post("/v1/coupons", coupon), api.post("/v1/coupons", coupon)
    assert (one.status_code, two.status_code) == (201, 201) and one.json()["id"] != two.json()["id"]
    doc = ok(api.get("/v1/openapi.json"))
    parameters = doc["paths"]["/v1/subscriptions/{subscription_id}/cancel"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)
    settled(api)


def test_default_incomplete_hands_back_the_client_secret(api: Client) -> None:
    _, customer = owner(api)
    created = ok(api.post(f"/v1/customers/{customer['id']}/subscriptions",
                          {"items": [{"price": price_id(api, "pro_monthly")}]}), 201)
    assert created["status"] == "incomplete" and created["client_secret_type"] == "payment_intent"
    assert created["client_secret"] and "secret" not in str(created["data"])
    got = ok(api.get(f"/v1/subscriptions/{created['id']}"))
    assert "client_secret" not in got and "secret" not in str(got["data"])
    assert_error(api.get("/v1/subscriptions/sub_nope"), 404, "not_found")
    assert_error(api.post(f"/v1/customers/{customer['id']}/subscriptions", {
        "items": [{"price": price_id(api, "pro_monthly")}], "trial_period_days": 3, "trial_end": 4102444800}),
        422, "validation_error")
    assert_error(api.post(f"/v1/customers/{customer['id']}/subscriptions", {
        "items": [{"price": price_id(api, "pro_monthly")}], "default_payment_method": "pm_fake_99999"}),
        409, "not_attached")
    settled(api)


def test_every_feature_of_a_summary_longer_than_its_event_page_is_entitled(api: Client, stack: LocalStack) -> None:
    owner_id, customer = owner(api)
    features = sorted(f"feature_{n:02d}_{uuid.uuid4().hex[:6]}" for n in range(14))
    key = f"suite_{uuid.uuid4().hex[:8]}"
    ok(api.post("/_local/fake-stripe/products", {"name": "Suite", "features": features,
                                                  "prices": [{"unit_amount": 900, "interval": "month",
                                                              "lookup_key": key}]}), 201)
    settled(api)
    pm = card(api, customer["id"])
    ok(api.put(f"/v1/customers/{customer['id']}/default-payment-method", {"payment_method_id": pm}))
    ok(api.post(f"/v1/customers/{customer['id']}/subscriptions", {"items": [{"price": price_id(api, key)}],
                                                                   "trial_period_days": 7}), 201)
    settled(api)
    # Stripe's event embeds the first page of the summary's entitlements only.
    (summary,) = [e for e in fake(stack).events_since(0)
                  if e["type"] == "entitlements.active_entitlement_summary.updated"
                  and e["data"]["object"]["customer"] == customer["processor_id"]]
    embedded = summary["data"]["object"]["entitlements"]
    assert embedded["has_more"] is True and len(embedded["data"]) < len(features)
    assert ok(api.get(f"/v1/owners/User/{owner_id}/entitlements")) == {"features": features}
    assert billing(api, owner_id)["entitlements"] == features
