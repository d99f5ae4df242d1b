"""Delivery through the v2 meter event stream (METER_API=v2, a stack of this
module's own), and the sweeper re-driving rows stuck in pending."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client, running, stack_settings
from tests.integration.usage_helpers import (
    REPORTER,
    REPORTER_STREAM,
    SWEEPER_SCHEDULE,
    billed,
    delivery_paused,
    fake,
    get_usage,
    new_customer,
    put_many,
    put_usage,
    settle,
    uid,
    usage_body,
)


@pytest.fixture(scope="module")
def stack_v2(function_log: Path) -> Iterator[LocalStack]:
    # The sweeper takes any pending row (age 0) so a test need not wait for
    # one to age; short backoffs keep the retries of a failing batch quick.
    yield from running(stack_settings(function_log, concurrency=4, meter_api="v2", stack_name="billing-local-v2",
                                     extra_env={"SWEEP_MIN_AGE_SECONDS": "0", "METER_BACKOFF_BASE_MS": "5"}))


@pytest.fixture(scope="module")
def api_v2(stack_v2: LocalStack) -> Client:
    return Client(stack_v2.url)


def fault(api: Client, status: int, times: int = 1, **extra: Any) -> None:
    resp = api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": status,
                                                   "times": times, **extra})
    assert resp.status_code == 200, resp.text


def stream_sends(stack: LocalStack, identifiers: set[str]) -> list[list[str]]:
    """The identifiers of each send_meter_events call that carried any of these."""
    out = []
    for call in fake(stack).calls:
        if call["operation"] == "send_meter_events":
            sent = [e["identifier"] for e in call["args"]["events"]]
            if set(sent) & identifiers:
                out.append(sent)
    return out


def test_n_events_go_to_stripe_in_ceil_n_over_100_stream_calls(stack_v2: LocalStack, api_v2: Client) -> None:
    customers = [new_customer(api_v2) for _ in range(3)]
    identifiers = [uid("v2") for _ in range(201)]
    with delivery_paused(stack_v2):
        put_many(api_v2, {identifier: usage_body(customers[n % 3], n % 9) for n, identifier in enumerate(identifiers)})
    rows = settle(stack_v2, api_v2, identifiers)
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    sends = stream_sends(stack_v2, set(identifiers))
    unsent = set(identifiers) - {i for s in sends for i in s}
    assert len(sends) == math.ceil(len(identifiers) / 100) == 3, (
        [len(s) for s in sends], [billed(stack_v2, [i]) for i in unsent],
        [c["operation"] for c in fake(stack_v2).calls])
    assert [len(s) for s in sends] == [100, 100, 1]
    assert sorted(i for s in sends for i in s) == sorted(identifiers)
    received = billed(stack_v2, identifiers)
    assert set(received) == set(identifiers)
    assert {e["api"] for e in received.values()} == {"v2"}
    assert {e["received"] for e in received.values()} == {1}
    assert received[identifiers[4]]["payload"] == {"stripe_customer_id": customers[1]["processor_id"], "value": "4"}
    # A session per worker process at most, reused for every send.
    sessions = [c for c in fake(stack_v2).calls if c["operation"] == "create_meter_event_session"]
    assert 1 <= len(sessions) <= stack_v2.settings.concurrency


def test_a_rejected_stream_request_is_halved_until_the_bad_event_stands_alone(stack_v2: LocalStack,
                                                                              api_v2: Client) -> None:
    assert stack_v2.drain(timeout=60)
    customer = new_customer(api_v2)
    first, second, third = (uid("halve") for _ in range(3))
    # Stripe refuses the first request (all three) and then the first half (first alone).
    fault(api_v2, 400, code="parameter_invalid_string", times=2)
    with delivery_paused(stack_v2):
        for identifier in (first, second, third):
            put_usage(api_v2, identifier, usage_body(customer))
    rows = settle(stack_v2, api_v2, [first, second, third])
    assert rows[first]["stripe_status"] == "failed"
    assert rows[first]["stripe_error"]["code"] == "parameter_invalid_string"
    assert (rows[second]["stripe_status"], rows[third]["stripe_status"]) == ("reported", "reported")
    assert stream_sends(stack_v2, {first, second, third}) == [[first, second, third], [first], [second, third]]
    assert set(billed(stack_v2, [first, second, third])) == {second, third}


def test_the_sweeper_redrives_a_row_whose_batch_went_to_the_on_failure_queue(stack_v2: LocalStack,
                                                                             api_v2: Client) -> None:
    assert stack_v2.drain(timeout=60)
    assert stack_v2.streams is not None
    tries = int(stack_v2.runtimes[REPORTER].env["METER_TRANSIENT_TRIES"])
    retries = stack_v2.streams.poller(REPORTER_STREAM).mapping.maximum_retry_attempts
    dead_letters = len(api_v2.get("/_local/on-failure").json()["data"])
    # Stripe answers 503 to every try of every delivery Lambda makes of the batch.
    fault(api_v2, 503, times=tries * (retries + 1))
    customer = new_customer(api_v2)
    identifier = uid("stuck")
    put_usage(api_v2, identifier, usage_body(customer, 11))
    assert stack_v2.drain(timeout=120)

    records = api_v2.get("/_local/on-failure").json()["data"]
    assert len(records) == dead_letters + 1
    assert records[-1]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert records[-1]["DDBStreamBatchInfo"]["batchSize"] == 1
    row = get_usage(api_v2, identifier)
    assert row["stripe_status"] == "pending"  # never lost: still owed to Stripe
    assert identifier in {r["identifier"] for r in api_v2.get("/v1/usage?status=pending&limit=100").json()["data"]}
    assert identifier not in billed(stack_v2, [identifier])

    swept = api_v2.post(f"/_local/schedules/{SWEEPER_SCHEDULE}/trigger")
    assert swept.status_code == 200, swept.text
    assert swept.json()["result"]["touched"] >= 1
    row = settle(stack_v2, api_v2, [identifier])[identifier]
    assert (row["stripe_status"], row["attempts"]) == ("reported", 1)
    entry = billed(stack_v2, [identifier])[identifier]
    assert (entry["api"], entry["received"], entry["payload"]["value"]) == ("v2", 1, "11")
    # Nothing left to sweep: a second run touches nothing of ours and bills nothing again.
    assert api_v2.post(f"/_local/schedules/{SWEEPER_SCHEDULE}/trigger").json()["result"]["touched"] == 0
    assert stack_v2.drain(timeout=60)
    assert billed(stack_v2, [identifier])[identifier]["received"] == 1
