"""Stripe events from the EventBridge partner bus, in-process (moto, the
Fake): one row per event id whichever path stores it first (webhook route or
EventBridge), snapshot and thin events stored as they came, thin events
applied as their snapshot type with the object fetched, and bad events
refused without a write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from billing.core.errors import BadRequest
from billing.customers import create
from billing.customers.keys import CustomerAttrs
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import CustomerRow, WebhookEventRow
from billing.processor.errors import ProcessorFailure
from billing.sync import inbound
from billing.webhooks import inbox, ingest, reconcile
from devstack.fake_stripe import FakeProcessor
from devstack.trigger import build, eventbridge_event

API = Actor("api", "arn:aws:iam::123456789012:user/test")


@pytest.fixture
def store(fake: FakeProcessor) -> Iterator[FakeProcessor]:
    """The webhook store on moto, with the inbox's client made inside the mock."""
    inbox._dynamodb.drop()
    yield fake
    inbox._dynamodb.drop()


def row(event_id: str) -> WebhookEventRow:
    found = find(WebhookEventRow, event_id)
    assert found is not None, event_id
    return found


def via_webhook(event: dict[str, Any]) -> bool:
    """The webhook route's ack path after its signature check: parse, put once."""
    return ingest.store(ingest.parse(json.dumps(event).encode()))


def customer(fake: FakeProcessor, owner_id: str) -> dict[str, Any]:
    created, _ = create.fetch_or_create("User", owner_id, CustomerAttrs(email=f"{owner_id}@example.com"), API)
    return created


# -- one row per event id, whichever path stores it first -----------------------------


def test_eventbridge_first_then_the_webhook_is_a_duplicate(store: FakeProcessor) -> None:
    event = build("customer.updated")
    assert inbound.handle(eventbridge_event(event)) == {"id": event["id"], "type": "customer.updated",
                                                       "duplicate": False}
    assert via_webhook(event) is False
    stored = row(event["id"])
    assert (stored.received_via, stored.status, stored.type) == ("eventbridge", "received", "customer.updated")
    assert json.loads(stored.body) == event  # the Stripe event itself, not EventBridge's envelope
    assert stored.object_id == event["data"]["object"]["id"]


def test_the_webhook_first_then_eventbridge_is_a_duplicate(store: FakeProcessor) -> None:
    event = build("payment_method.attached")
    raw = json.dumps(event)
    assert via_webhook(event) is True
    assert inbound.handle(eventbridge_event(event))["duplicate"] is True
    assert inbound.handle(eventbridge_event(event))["duplicate"] is True  # EventBridge redelivers too
    stored = row(event["id"])
    assert stored.received_via == "webhook" and stored.body == raw  # the signed bytes, untouched


def test_a_thin_event_is_stored_as_it_came(store: FakeProcessor) -> None:
    event = build("v1.customer.updated", sets=[("related_object.id", "cus_fake_00042")])
    assert inbound.handle(eventbridge_event(event))["duplicate"] is False
    stored = row(event["id"])
    assert json.loads(stored.body) == event and "data" not in json.loads(stored.body)
    assert stored.object_id == "cus_fake_00042"  # related_object.id: the operator sees what it is about
    # Thin events write `created` as RFC 3339; the row keeps unix seconds, as for snapshot events.
    assert stored.created == int(datetime.fromisoformat(event["created"].replace("Z", "+00:00")).timestamp())


@pytest.mark.parametrize("envelope", [
    {"source": "aws.partner/other.com/x", "detail": {}},
    {"source": "billing-functions", "detail": {}},
    {"detail": {}},
])
def test_an_event_of_another_source_is_refused(store: FakeProcessor, envelope: dict[str, Any]) -> None:
    event = build("customer.updated")
    with pytest.raises(BadRequest) as refused:
        inbound.handle({**envelope, "detail": event})
    assert "source" in refused.value.details
    assert find(WebhookEventRow, event["id"]) is None


def test_a_malformed_stripe_event_is_refused_naming_fields_not_values(store: FakeProcessor) -> None:
    event = build("customer.updated")
    event["created"] = "yesterday"
    event["data"] = {"object": "cus_secret_value"}
    with pytest.raises(BadRequest) as refused:
        inbound.handle(eventbridge_event(event))
    assert refused.value.details == {"fields": {"created": "must be unix seconds or an RFC 3339 time",
                                                "data.object": "must be an object"}}
    assert "cus_secret_value" not in str(refused.value)
    assert find(WebhookEventRow, event["id"]) is None
    with pytest.raises(BadRequest):
        inbound.handle({"source": "aws.partner/stripe.com/ed_test_local", "detail": "not an event"})


# -- thin events, applied ------------------------------------------------------------


def test_a_thin_event_is_applied_as_its_snapshot_type_with_the_object_fetched(store: FakeProcessor) -> None:
    cust = customer(store, "thin-1")
    store.update_customer(cust["processor_id"], fields={"name": "Renamed At Stripe"})
    event = build("v1.customer.updated", sets=[("related_object.id", cust["processor_id"])])
    inbound.handle(eventbridge_event(event))
    calls_before = len(store.calls)
    assert reconcile.process(event["id"], 0) == "processed"
    fetched = [c for c in store.calls[calls_before:] if c["operation"] == "retrieve_object"]
    assert [c["args"] for c in fetched] == [{"object_type": "customer", "object_id": cust["processor_id"]}]
    current = find(CustomerRow, cust["id"])
    assert current is not None and current.data["name"] == "Renamed At Stripe"
    assert (current.last_stripe_event_id, current.last_stripe_event_ts) == (event["id"], row(event["id"]).created)
    rows, _ = ledger.for_subject("customer", cust["id"], limit=10, cursor=None)
    newest = rows[0]
    # Recorded (and published) under the snapshot type, as a snapshot event would be.
    assert (newest.type, newest.data["stripe_event_id"], newest.actor_type) == ("customer.updated", event["id"],
                                                                              "webhook")
    assert row(event["id"]).status == "processed"


def test_a_thin_event_of_a_type_nothing_projects_is_ignored_without_a_fetch(store: FakeProcessor) -> None:
    event = build("v1.customer.updated", sets=[("type", "v2.core.event_destination.ping"),
                                               ("related_object", {"id": "ed_123", "type": "v2.core.event_destination",
                                                                   "url": "/v2/core/event_destinations/ed_123"})])
    inbound.handle(eventbridge_event(event))
    calls_before = len(store.calls)
    assert reconcile.process(event["id"], 0) == "ignored"
    assert store.calls[calls_before:] == []


def test_a_thin_event_whose_object_is_gone_fails_without_retrying(store: FakeProcessor) -> None:
    event = build("v1.customer.updated", sets=[("related_object.id", "cus_never_existed")])
    inbound.handle(eventbridge_event(event))
    assert reconcile.process(event["id"], 0) == "failed"
    stored = row(event["id"])
    assert stored.error == {"type": "bad_request", "code": "related_object_missing",
                            "message": "the thin event's customer is gone at Stripe"}


def test_a_thin_event_without_a_related_object_reads_the_full_event(store: FakeProcessor) -> None:
    event = build("v1.customer.updated")
    del event["related_object"]
    inbound.handle(eventbridge_event(event))
    with pytest.raises(ProcessorFailure):  # the Fake has no such v2 event: retried by the stream
        reconcile.process(event["id"], 0)
    assert [c["args"] for c in store.calls if c["operation"] == "retrieve_v2_event"] == [{"event_id": event["id"]}]
    assert row(event["id"]).status == "failed"
