"""The local stack's EventBridge stand-in (devstack/eventbridge.py), in
process: boto3's own PutEvents against it through the gateway, as the
publisher function calls it; what the bus kept; scripted refusals of
entries and of whole calls; and a partner source's event delivered to the
matching rule's function with Lambda's asynchronous retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.eventbridge import API_PATH, EventBridgeStandIn
from devstack.gateway import Gateway
from devstack.runtime import FunctionError
from devstack.streams import OnFailureLog
from devstack.template import RuleSpec

BUS = "billing-test-domain-events"
PARTNER = "aws.partner/stripe.com/ed_test_unit"


class Functions:
    """A stand-in for the stack's invoke: records calls, fails the first `fail` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        self.calls.append((function, event))
        if self.fail:
            self.fail -= 1
            raise FunctionError("Unavailable", "the event could not be stored now")
        return {"stored": event["detail"]["id"]}


@pytest.fixture
def functions() -> Functions:
    return Functions()


@pytest.fixture
def stand_in(functions: Functions) -> Iterator[tuple[EventBridgeStandIn, str]]:
    rule = RuleSpec(name="Inbound.StripeEvents", function="Inbound", event_bus=PARTNER,
                    pattern={"source": [PARTNER]}, maximum_retry_attempts=2, on_failure="arn:aws:sqs:dlq")
    bridge = EventBridgeStandIn({BUS: "DomainEventBus", PARTNER: "StripePartnerEventBus"}, [rule], functions,
                                OnFailureLog())
    gateway = Gateway([], lambda function, event: None, "127.0.0.1", 0)
    bridge.register(gateway.router)
    gateway.start()
    try:
        yield bridge, gateway.url
    finally:
        gateway.stop()


def events_client(url: str) -> Any:
    return boto3.client("events", endpoint_url=url + API_PATH, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(retries={"mode": "standard", "max_attempts": 2}))


def entry(detail_type: str = "customer.updated", **detail: Any) -> dict[str, Any]:
    return {"Source": "billing-functions", "DetailType": detail_type, "EventBusName": BUS,
            "Detail": json.dumps({"id": "evt_1", **detail})}


def test_put_events_is_kept_in_order_and_listed(stand_in: tuple[EventBridgeStandIn, str]) -> None:
    bridge, url = stand_in
    client = events_client(url)
    answer = client.put_events(Entries=[entry(n=1), entry("customer.created", n=2)])
    assert answer["FailedEntryCount"] == 0 and all(e["EventId"] for e in answer["Entries"])
    listed = requests.get(url + "/_local/events/published", timeout=10).json()
    assert [(e["detail-type"], e["detail"]["n"], e["source"], e["event_bus_name"]) for e in listed["data"]] == [
        ("customer.updated", 1, "billing-functions", BUS), ("customer.created", 2, "billing-functions", BUS)]
    assert [e["id"] for e in listed["data"]] == [e["EventId"] for e in answer["Entries"]]
    assert requests.delete(url + "/_local/events/published", timeout=10).json() == {"cleared": True}
    assert bridge.published() == []


def test_entries_are_checked_like_eventbridge_checks_them(stand_in: tuple[EventBridgeStandIn, str]) -> None:
    bridge, url = stand_in
    client = events_client(url)
    answer = client.put_events(Entries=[
        entry(), {**entry(), "EventBusName": "no-such-bus"}, {**entry(), "Detail": "[1]"},
        {**entry(), "EventBusName": f"arn:aws:events:us-east-1:123456789012:event-bus/{BUS}"}])
    assert answer["FailedEntryCount"] == 2
    assert [e.get("ErrorCode") for e in answer["Entries"]] == [None, "ResourceNotFoundException", "MalformedDetail",
                                                                None]
    with pytest.raises(ClientError) as too_many:
        client.put_events(Entries=[entry()] * 11)
    assert too_many.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as too_big:
        client.put_events(Entries=[entry(pad="x" * 200_000), entry(pad="y" * 100_000)])
    assert too_big.value.response["Error"]["Code"] == "ValidationException"
    assert len(bridge.published()) == 2


def test_scripted_entry_refusals_and_call_failures(stand_in: tuple[EventBridgeStandIn, str]) -> None:
    bridge, url = stand_in
    client = events_client(url)
    pending = requests.post(url + "/_local/events/faults", timeout=10,
                            json={"entry_error": "ThrottlingException", "times": 2, "detail_type": "customer.updated"})
    assert pending.json()["entries"] == [{"entry_error": "ThrottlingException", "detail_type": "customer.updated",
                                          "times": 2}]
    answer = client.put_events(Entries=[entry(n=1), entry("customer.created", n=2), entry(n=3), entry(n=4)])
    assert [e.get("ErrorCode") for e in answer["Entries"]] == ["ThrottlingException", None, "ThrottlingException",
                                                                None]
    assert [e["detail"]["n"] for e in bridge.published()] == [2, 4]
    # A whole call refused with a code botocore does not retry reaches the caller.
    requests.post(url + "/_local/events/faults", json={"error": "AccessDeniedException", "times": 1}, timeout=10)
    with pytest.raises(ClientError) as denied:
        client.put_events(Entries=[entry(n=5)])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    # An InternalException is retried by botocore: one fault is absorbed.
    bridge.add_fault(error="InternalException", times=1)
    assert client.put_events(Entries=[entry(n=6)])["FailedEntryCount"] == 0
    assert [e["detail"]["n"] for e in bridge.published()] == [2, 4, 6]
    assert bridge.pending_faults() == {"calls": [], "entries": []}
    with pytest.raises(ValueError, match="times"):
        bridge.add_fault(times=1)


def test_a_partner_event_reaches_the_rules_function(stand_in: tuple[EventBridgeStandIn, str],
                                                    functions: Functions) -> None:
    _, url = stand_in
    resp = requests.post(url + "/_local/events/partner", timeout=10, json={
        "source": PARTNER, "detail-type": "customer.updated", "detail": {"id": "evt_partner_1"}})
    assert resp.status_code == 200
    assert resp.json()["delivered"] == [{"rule": "Inbound.StripeEvents", "function": "Inbound", "attempts": 1,
                                         "result": {"stored": "evt_partner_1"}}]
    ((function, event),) = functions.calls
    assert function == "Inbound"
    assert {"version", "id", "account", "region", "time", "resources"} <= set(event)
    assert (event["source"], event["detail-type"]) == (PARTNER, "customer.updated")
    other = requests.post(url + "/_local/events/partner", timeout=10, json={
        "source": "aws.partner/stripe.com/ed_other", "detail-type": "x", "detail": {"id": "evt_2"}})
    assert other.status_code == 404 and len(functions.calls) == 1
    assert requests.post(url + "/_local/events/partner", json={"source": "billing-functions"},
                         timeout=10).status_code == 400


def test_a_failing_function_is_retried_then_recorded_on_failure(stand_in: tuple[EventBridgeStandIn, str],
                                                                 functions: Functions) -> None:
    bridge, _ = stand_in
    functions.fail = 2
    (report,) = bridge.deliver({"source": PARTNER, "detail-type": "x", "detail": {"id": "evt_retry"}})
    assert report["attempts"] == 3 and report["result"] == {"stored": "evt_retry"}
    assert len(bridge.on_failure) == 0
    functions.fail = 3
    (report,) = bridge.deliver({"source": PARTNER, "detail-type": "x", "detail": {"id": "evt_lost"}})
    assert report["attempts"] == 3 and report["error"]["type"] == "Unavailable"
    (record,) = bridge.on_failure.records()
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"]["detail"] == {"id": "evt_lost"} and record["destination"] == "arn:aws:sqs:dlq"
