"""The usage functions invoked directly with the sample events in events/usage/
(what `sam local invoke -e` feeds them), inside the stack's workers so they
run with exactly the template's environment."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import (
    REPORTER,
    delivery_paused,
    fake,
    get_usage,
    new_customer,
    put_usage,
    settle,
    uid,
    usage_body,
)
from tests.integration.webhook_helpers import settled

ROOT = Path(__file__).resolve().parents[2]


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / "usage" / name).read_text()))


def test_put_usage_sample_event_accepts_then_replays(stack: LocalStack, api: Client) -> None:
    owner_id = f"sample-{uuid.uuid4()}"
    assert api.put(f"/v1/owners/User/{owner_id}/customer").status_code == 201
    event = load_event("put_usage.json")
    identifier = uid("sample")
    body = json.loads(event["body"])
    body["owner"]["id"] = owner_id
    event["body"] = json.dumps(body)
    event["pathParameters"]["identifier"] = identifier
    event["path"] = f"/v1/usage/{identifier}"
    first = stack.invoke("ApiFunction", event)
    assert first["statusCode"] == 202, first["body"]
    row = json.loads(first["body"])
    assert (row["identifier"], row["value"], row["operation_id"]) == (identifier, 3, "job-7")
    again = stack.invoke("ApiFunction", event)
    assert again["statusCode"] == 200
    assert json.loads(again["body"])["id"] == row["id"]


def test_reporter_sample_event_for_a_row_that_is_not_pending_calls_nobody(stack: LocalStack, api: Client) -> None:
    # A record redelivered after its row was reported: skipped after a read, no Stripe call.
    customer = new_customer(api)
    settled(api)  # Stripe's customer.created for it (re-fetched in its second): before the calls are counted
    identifier = uid("sample")
    put_usage(api, identifier, usage_body(customer))
    settle(stack, api, [identifier])
    event = load_event("meter_events_stream_insert.json")
    image = event["Records"][0]["dynamodb"]["NewImage"]
    image["pk"] = {"S": identifier}
    image["stripe_customer_id"] = {"S": customer["processor_id"]}
    calls = len(fake(stack).calls)
    assert stack.invoke(REPORTER, event) == {"batchItemFailures": []}
    assert len(fake(stack).calls) == calls
    # The sample as it is names a row that does not exist: nothing to send either.
    assert stack.invoke(REPORTER, load_event("meter_events_stream_insert.json")) == {"batchItemFailures": []}


def test_reporter_reports_a_record_that_is_not_a_usage_row_as_failed(stack: LocalStack) -> None:
    event = load_event("meter_events_stream_insert.json")
    broken = copy.deepcopy(event["Records"][0])
    del broken["dynamodb"]["NewImage"]["event_name"]
    broken["dynamodb"]["SequenceNumber"] = "100000000000000000002"
    event["Records"].append(broken)
    assert stack.invoke(REPORTER, event) == {"batchItemFailures": [{"itemIdentifier": "100000000000000000002"}]}


def test_a_row_pending_past_stripes_dedup_window_fails_instead_of_being_resent(stack: LocalStack,
                                                                              api: Client) -> None:
    """Stripe deduplicates an identifier for 24 hours: a row pending for longer
    may already be billed, so the reporter fails it for a person to check
    rather than risk a second charge; a retry (a decision) sends it."""
    customer = new_customer(api)
    settled(api)  # Stripe's customer.created for it (re-fetched in its second): before the calls are counted
    identifier = uid("stale")
    calls = len(fake(stack).calls)
    with delivery_paused(stack):
        put_usage(api, identifier, usage_body(customer))
        event = load_event("meter_events_stream_insert.json")
        image = event["Records"][0]["dynamodb"]["NewImage"]
        image["pk"] = {"S": identifier}
        image["pending_since"] = {"S": "2025-11-19T00:00:00.000Z"}  # long before the 24 hours
        assert stack.invoke(REPORTER, event) == {"batchItemFailures": []}
    row = get_usage(api, identifier)
    assert row["stripe_status"] == "failed"
    assert (row["stripe_error"]["type"], row["stripe_error"]["code"]) == ("stale_pending", "identifier_window_passed")
    assert row["attempts"] == 0  # Stripe was not called
    assert len(fake(stack).calls) == calls
    # The stream's own record for the row arrives: no longer pending, skipped.
    assert stack.drain(timeout=60)
    assert get_usage(api, identifier)["stripe_status"] == "failed"
    assert api.post(f"/v1/usage/{identifier}/retry").status_code == 202
    row = settle(stack, api, [identifier])[identifier]
    assert (row["stripe_status"], row["attempts"]) == ("reported", 1)


def test_sweeper_sample_event_reports_what_it_did(stack: LocalStack) -> None:
    result = stack.invoke("MeterSweeperFunction", load_event("sweeper_schedule.json"))
    assert set(result) == {"scanned", "touched"}
    assert all(isinstance(v, int) and v >= 0 for v in result.values())


def test_batch_usage_sample_event_answers_each_event(stack: LocalStack, api: Client) -> None:
    owner_id = f"sample-{uuid.uuid4()}"
    assert api.put(f"/v1/owners/User/{owner_id}/customer").status_code == 201
    event = load_event("batch_usage.json")
    body = json.loads(event["body"])
    for item in body["events"]:
        item["owner"]["id"] = owner_id
        item["identifier"] = uid("sample-batch")
    event["body"] = json.dumps(body)
    answer = stack.invoke("ApiFunction", event)
    assert answer["statusCode"] == 207, answer["body"]
    results = json.loads(answer["body"])["data"]
    assert [(r["identifier"], r["status"]) for r in results] == [(body["events"][0]["identifier"], 202),
                                                                 (body["events"][1]["identifier"], 422)]


def test_cancel_usage_sample_event_cancels_a_pending_event(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("sample-cancel")
    with delivery_paused(stack):
        put_usage(api, identifier, usage_body(customer))
        event = load_event("cancel_usage.json")
        event["pathParameters"]["identifier"] = identifier
        event["path"] = f"/v1/usage/{identifier}/cancel"
        answer = stack.invoke("ApiFunction", event)
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["stripe_status"] == "canceled"
    assert settle(stack, api, [identifier])[identifier]["stripe_status"] == "canceled"
    assert identifier not in {e["identifier"] for e in fake(stack).meter_events}
