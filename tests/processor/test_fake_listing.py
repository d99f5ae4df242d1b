"""The Fake's list endpoints and Dashboard changes, in process and through the
RPC hop: Stripe's pagination (newest first; starting_after older,
ending_before newer, has_more), its filters, its refusals, and a change made
on Stripe's side that sends its event."""

from __future__ import annotations

from typing import Any

import pytest

from billing.processor.base import Processor
from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe import FakeProcessor


def _customers(p: Processor, count: int) -> list[dict[str, Any]]:
    return [p.create_customer(idempotency_key=f"list-{n}", email=None, name=f"n{n}", metadata={})
            for n in range(count)]


def _ids(page: dict[str, Any]) -> list[str]:
    return [o["id"] for o in page["data"]]


def test_pages_walk_every_object_once_newest_first(processor: Processor) -> None:
    made = [c["id"] for c in _customers(processor, 7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = processor.list_objects("customer", limit=3, starting_after=cursor)
        assert page["object"] == "list" and page["url"] == "/v1/customers"
        seen += _ids(page)
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == list(reversed(made))
    # ending_before: the page nearest the cursor on its newer side, still newest first.
    newer = processor.list_objects("customer", limit=2, ending_before=made[2])
    assert _ids(newer) == [made[4], made[3]] and newer["has_more"]
    newest = processor.list_objects("customer", limit=5, ending_before=made[4])
    assert _ids(newest) == [made[6], made[5]] and not newest["has_more"]


def test_filters_payment_methods_by_customer_events_by_time_and_type(processor: Processor,
                                                                    fake: FakeProcessor) -> None:
    one, two = _customers(processor, 2)
    pm = processor.attach_payment_method("pm_card_visa", customer_id=one["id"], idempotency_key="a1")
    assert _ids(processor.list_objects("payment_method", params={"customer": one["id"]})) == [pm["id"]]
    assert processor.list_objects("payment_method", params={"customer": two["id"]})["data"] == []
    created = processor.list_objects("event", params={"types": ["customer.created"]})
    assert [e["data"]["object"]["id"] for e in created["data"]] == [two["id"], one["id"]]
    assert processor.list_objects("event", params={"created": {"lt": 0}})["data"] == []
    assert processor.list_objects("event", limit=1)["data"][0]["type"] == "payment_method.attached"


def test_refusals_are_stripes(processor: Processor) -> None:
    _customers(processor, 1)
    with pytest.raises(ProcessorFailure) as unknown:
        processor.list_objects("customer", starting_after="cus_nobody")
    assert (unknown.value.status, unknown.value.code) == (404, "resource_missing")
    with pytest.raises(ProcessorFailure):
        processor.list_objects("customer", starting_after="cus_fake_00001", ending_before="cus_fake_00001")
    with pytest.raises(ValueError, match="per customer"):
        processor.list_objects("payment_method")


def test_a_dashboard_change_sends_its_event_and_is_no_api_call(fake: FakeProcessor) -> None:
    (customer,) = _customers(fake, 1)
    calls = len(fake.calls)
    changed = fake.dashboard_update("customer", customer["id"], {"email": "new@example.com",
                                                                  "metadata": {"plan": "pro"}})
    assert changed["email"] == "new@example.com" and changed["metadata"] == {"plan": "pro"}
    assert len(fake.calls) == calls
    event = fake.list_objects("event", limit=1)["data"][0]
    assert event["type"] == "customer.updated" and event["data"]["object"]["email"] == "new@example.com"
    assert event["data"]["previous_attributes"] == {"email": None, "metadata": {}}
    before = fake.event_count()
    fake.dashboard_update("customer", customer["id"], {"email": "new@example.com"})  # no change, no event
    assert fake.event_count() == before
    with pytest.raises(ProcessorFailure):
        fake.dashboard_update("customer", "cus_nobody", {"name": "x"})
    with pytest.raises(ProcessorFailure):
        fake.dashboard_update("customer", customer["id"], {"id": "cus_other"})
