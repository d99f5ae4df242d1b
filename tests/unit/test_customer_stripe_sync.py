"""Customers follow Stripe both ways, in-process (moto, the Fake, its events
applied through reconcile as the stack would): the columns Stripe holds come
from its webhooks, a PATCH goes to Stripe first, and the webhook Stripe sends
back for a PATCH settles without a second change."""

from __future__ import annotations

from typing import Any

import pytest

from billing.core import idempotency
from billing.core.errors import Conflict, PreconditionFailed, ValidationFailed
from billing.customers import create, records, update
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.tables import LedgerRow
from devstack.fake_stripe import FakeProcessor
from tests.unit.webhook_delivery import Deliverer

API = Actor("api", "arn:aws:iam::123456789012:user/test")


@pytest.fixture
def hooks(fake: FakeProcessor) -> Deliverer:
    deliverer = Deliverer(fake)
    deliverer.deliver()  # the seeded catalog
    return deliverer


def _ledger(customer_id: str) -> list[LedgerRow]:
    return sorted(LedgerRow.query(f"customer#{customer_id}"), key=lambda r: r.sk)


def _customer(hooks: Deliverer, owner: str, **attrs: Any) -> dict[str, Any]:
    body, _ = create.fetch_or_create("User", owner, CustomerAttrs(email=f"{owner}@example.com", **attrs), API)
    hooks.deliver()  # Stripe's customer.created
    return records.get(body["id"], [])


def _updates(fake: FakeProcessor) -> list[dict[str, Any]]:
    return [c for c in fake.calls if c["operation"] == "update_customer"]


def test_a_dashboard_change_reaches_the_columns_stripe_holds(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "dash-1", name="Ada", preferred_timezone="Europe/Berlin", metadata={"plan": "pro"})
    fake.dashboard_update("customer", customer["processor_id"], {
        "email": "ada.new@example.com", "name": "Ada Lovelace", "preferred_locales": ["fr-FR"],
        "tax_exempt": "reverse", "metadata": {"plan": "team", "seats": "4"}})
    outcomes = hooks.deliver()
    assert list(outcomes.values()) == ["processed"]
    row = records.get(customer["id"], [])
    assert (row["email"], row["name"], row["preferred_locale"], row["tax_exempt"]) == (
        "ada.new@example.com", "Ada Lovelace", "fr-FR", "reverse")
    # Stripe's metadata without the owner keys; what only this deployment holds stays.
    assert row["metadata"] == {"plan": "team", "seats": "4"}
    assert (row["owner_type"], row["owner_id"], row["preferred_timezone"]) == ("User", "dash-1", "Europe/Berlin")
    last = _ledger(customer["id"])[-1]
    assert last.type == "customer.updated" and last.actor_type == "webhook"
    assert {"email", "name", "preferred_locale", "tax_exempt", "metadata"} <= set(last.data["changed_fields"])
    assert "ada.new@example.com" not in str(last.data) and "Lovelace" not in str(last.data)  # names, not values


def test_stripes_currency_wins_once_it_has_one(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "cur-1", currency="eur")
    fake.dashboard_update("customer", customer["processor_id"], {"name": "No currency yet"})
    hooks.deliver()
    assert records.get(customer["id"], [])["currency"] == "eur"  # Stripe's is null: the host's choice stands
    fake.dashboard_update("customer", customer["processor_id"], {"currency": "usd"})
    hooks.deliver()
    assert records.get(customer["id"], [])["currency"] == "usd"
    with pytest.raises(Conflict) as refused:
        update.update(customer["id"], {"currency": "gbp"}, expected_version=None, actor=API)
    assert refused.value.details == {"currency": "usd"}


def test_patch_goes_to_stripe_first_then_the_row_and_its_ledger_row(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "patch-1")
    with idempotency.request("patch-key-1", scope="test"):
        after = update.update(customer["id"], {"email": "billing@acme.dev", "name": "Acme Dev",
                                               "preferred_timezone": "UTC", "metadata": {"team": "core"}},
                              expected_version=customer["lock_version"], actor=API)
    (call,) = _updates(fake)
    assert call["args"]["customer_id"] == customer["processor_id"]
    assert call["args"]["fields"] == {"email": "billing@acme.dev", "name": "Acme Dev", "metadata": {"team": "core"}}
    assert call["idempotency_key"].startswith("customer-update-")
    stripe_side = fake.retrieve_customer(customer["processor_id"])
    assert (stripe_side["email"], stripe_side["name"], stripe_side["metadata"]["team"]) == (
        "billing@acme.dev", "Acme Dev", "core")
    assert (after["email"], after["name"], after["preferred_timezone"], after["metadata"]) == (
        "billing@acme.dev", "Acme Dev", "UTC", {"team": "core"})
    # The If-Match version claimed before Stripe was called, then Stripe's answer written.
    assert after["lock_version"] == customer["lock_version"] + 2
    assert after["last_stripe_event_id"].startswith("api_")
    last = _ledger(customer["id"])[-1]
    assert last.type == "customer.updated" and last.actor_type == "api"
    assert {"email", "name", "preferred_timezone", "metadata"} <= set(last.data["changed_fields"])


def test_stripes_webhook_for_the_patch_settles_without_a_second_change(fake: FakeProcessor,
                                                                      hooks: Deliverer) -> None:
    customer = _customer(hooks, "echo-1")
    after = update.update(customer["id"], {"name": "Echoed"}, expected_version=None, actor=API)
    before_ledger = len(_ledger(customer["id"]))
    outcomes = hooks.deliver()  # Stripe's customer.updated for the PATCH's own change
    assert len(outcomes) == 1 and set(outcomes.values()) <= {"processed", "stale"}
    settled = records.get(customer["id"], [])
    assert settled["name"] == "Echoed"
    assert settled["lock_version"] == after["lock_version"]  # the caller's ETag still holds
    assert len(_ledger(customer["id"])) == before_ledger


def test_stripes_customer_created_for_a_customer_the_api_created_records_no_second_creation(
        fake: FakeProcessor, hooks: Deliverer) -> None:
    body, created = create.fetch_or_create("User", "once-1", CustomerAttrs(email="once-1@example.com"), API)
    assert created
    outcomes = hooks.deliver()  # Stripe's customer.created for the API's own call
    assert len(outcomes) == 1 and set(outcomes.values()) <= {"processed", "stale"}
    # One creation in the ledger, so one customer.created on the bus.
    assert [(r.type, r.actor_type) for r in _ledger(body["id"])] == [("customer.created", "api")]
    row = records.get(body["id"], [])
    assert row["lock_version"] == body["lock_version"]  # the caller's ETag still holds
    assert row["last_stripe_event_id"].startswith("api_") and row["last_stripe_event_ts"] is not None
    assert row["tax_exempt"] == "none"  # Stripe's answer, as its webhook would have set it


def test_a_customer_created_that_finds_the_row_is_recorded_as_an_update(fake: FakeProcessor,
                                                                        hooks: Deliverer) -> None:
    body, _ = create.fetch_or_create("User", "later-1", CustomerAttrs(email="later-1@example.com"), API)
    fake.dashboard_update("customer", body["processor_id"], {"name": "Changed at Stripe"})
    hooks.deliver()  # customer.created (re-fetched in the API's second: it shows the change), customer.updated
    assert records.get(body["id"], [])["name"] == "Changed at Stripe"
    rows = _ledger(body["id"])
    assert [(r.type, r.actor_type) for r in rows if r.type == "customer.created"] == [("customer.created", "api")]
    assert {r.type for r in rows if r.actor_type == "webhook"} == {"customer.updated"}


def test_the_same_request_retried_is_the_same_stripe_call(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "retry-1")
    fake.add_fault("update_customer", 500, after=True)  # Stripe took it; the answer was lost
    with idempotency.request("patch-key-2", scope="test"), pytest.raises(Exception, match="unavailable"):
        update.update(customer["id"], {"name": "Once"}, expected_version=customer["lock_version"], actor=API)
    assert records.get(customer["id"], [])["name"] is None  # nothing written locally
    with idempotency.request("patch-key-2", scope="test"):
        after = update.update(customer["id"], {"name": "Once"}, expected_version=customer["lock_version"], actor=API)
    first, second = _updates(fake)
    assert first["idempotency_key"] == second["idempotency_key"]
    assert after["name"] == "Once"


def test_a_stale_if_match_is_412_before_stripe_is_called(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "stale-1")
    update.update(customer["id"], {"preferred_timezone": "UTC"}, expected_version=None, actor=API)
    with pytest.raises(PreconditionFailed):
        update.update(customer["id"], {"email": "late@example.com"}, expected_version=customer["lock_version"],
                      actor=API)
    assert _updates(fake) == []
    assert fake.retrieve_customer(customer["processor_id"])["email"] == "stale-1@example.com"


def test_a_stripe_refusal_changes_nothing_locally(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "refused-1")
    ledger_before = len(_ledger(customer["id"]))
    fake.add_fault("update_customer", 400, code="email_invalid", message="Invalid email address")
    with pytest.raises(ValidationFailed) as refused:
        update.update(customer["id"], {"email": "x@example.com", "preferred_timezone": "UTC"},
                      expected_version=None, actor=API)
    assert refused.value.details == {"processor_code": "email_invalid"}
    row = records.get(customer["id"], [])
    assert (row["email"], row["preferred_timezone"], row["lock_version"]) == (
        customer["email"], None, customer["lock_version"])
    assert len(_ledger(customer["id"])) == ledger_before


def test_a_local_only_change_never_calls_stripe(fake: FakeProcessor, hooks: Deliverer) -> None:
    customer = _customer(hooks, "local-1")
    after = update.update(customer["id"], {"preferred_timezone": "Asia/Tokyo", "currency": "jpy",
                                           "email": customer["email"]}, expected_version=None, actor=API)
    assert _updates(fake) == []
    assert (after["preferred_timezone"], after["currency"]) == ("Asia/Tokyo", "jpy")
    assert _ledger(customer["id"])[-1].data == {"changed_fields": ["currency", "preferred_timezone"]}
