"""The usage outbox keeps the promise on its newer surfaces (issue 19):
a cancel after a lost answer, a retry after Stripe's meter error, and a
rejected API key. Each scenario checks what the Fake bills (its meter events
and meter event summaries), not only the rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import check_usage, pending_faults, quiet
from tests.integration.usage_helpers import (
    REPORTER,
    delivery_paused,
    fake,
    get_usage,
    new_customer,
    put_many,
    settle,
    uid,
    usage_body,
)


def sends(stack: LocalStack, identifiers: set[str]) -> int:
    """How many delivery calls to the Fake carried any of these identifiers (faulted ones too)."""
    count = 0
    for call in fake(stack).calls:
        if call["operation"] == "create_meter_event":
            count += call["args"]["identifier"] in identifiers
        elif call["operation"] == "send_meter_events":
            count += any(e.get("identifier") in identifiers for e in call["args"]["events"])
    return count


def wait_for(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def billed_value(stack: LocalStack, row: dict[str, Any]) -> float:
    """What Stripe (the Fake) would bill the row's customer on its meter, from the summaries."""
    start = (int(time.time()) // 60 - 24 * 60) * 60
    summaries = fake(stack).meter_event_summaries(event_name=row["event_name"], customer_id=row["stripe_customer_id"],
                                                  start_time=start, end_time=start + 25 * 3600)
    return float(sum(s["aggregated_value"] for s in summaries["data"]))


def test_a_cancel_between_redeliveries_of_a_lost_answer_is_not_billed(stack: LocalStack, api: Client) -> None:
    """The first send took effect but its answer was lost, then Stripe
    throttled every resend; the cancel lands between two deliveries (no
    send of its own in flight). The row ends canceled and Stripe bills
    nothing: the event was canceled there with an adjustment."""
    quiet(stack, api)
    customer = new_customer(api)
    identifier, event_name = uid("lost"), f"lost_{uid('m')[-8:]}"
    tries = int(stack.runtimes[REPORTER].env.get("METER_TRANSIENT_TRIES", "4"))
    with delivery_paused(stack):
        put_many(api, {identifier: usage_body(customer, 7, event_name)})
        fake(stack).add_fault("report_meter_event", 503, after=True)  # took effect, answer lost
        fake(stack).add_fault("report_meter_event", 429, times=10_000)
    # One more call than an invocation makes: the first invocation is over.
    wait_for("a redelivery", lambda: sends(stack, {identifier}) > tries)
    assert [e["identifier"] for e in fake(stack).meter_events].count(identifier) == 1
    with delivery_paused(stack):  # the running invocation finishes first
        assert get_usage(api, identifier)["stripe_status"] == "pending"
        resp = api.post(f"/v1/usage/{identifier}/cancel")
        assert resp.status_code == 200, resp.text
        assert resp.json()["stripe_status"] == "canceled"
        fake(stack).clear_faults()
    rows = check_usage(stack, api, {identifier: 7}, canceled={identifier})
    (entry,) = [e for e in fake(stack).meter_events if e["identifier"] == identifier]
    assert entry["canceled"] is True
    assert billed_value(stack, rows[identifier]) == 0.0
    assert pending_faults(stack, api) == {}


def test_a_retry_after_a_meter_error_is_sent_again_and_billed(stack: LocalStack, api: Client) -> None:
    """Stripe took the event, then rejected it (meter error): not billed. A
    retry must really resend it, under a new identifier (Stripe drops a
    resent one and replays a resent idempotency key), and the row counts as
    reported only because Stripe took that send."""
    quiet(stack, api)
    customer = new_customer(api)
    identifier, event_name = uid("rejected"), f"rej_{uid('m')[-8:]}"
    put_many(api, {identifier: usage_body(customer, 5, event_name)})
    row = settle(stack, api, [identifier])[identifier]
    assert row["stripe_status"] == "reported" and billed_value(stack, row) == 5.0
    resp = api.post("/_local/fake-stripe/meter-error", {"identifiers": [identifier]})
    assert resp.status_code == 200, resp.text
    wait_for("the meter error to fail the row", lambda: get_usage(api, identifier)["stripe_status"] == "failed")
    assert billed_value(stack, row) == 0.0  # Stripe rejected it

    resp = api.post(f"/v1/usage/{identifier}/retry")
    assert resp.status_code == 202, resp.text
    row = settle(stack, api, [identifier])[identifier]
    assert row["stripe_status"] == "reported", row
    assert row["stripe_identifier"] not in (None, identifier) and row["stripe_identifier"].startswith(identifier)
    sent = {e["identifier"]: e for e in fake(stack).meter_events}
    assert sent[row["stripe_identifier"]]["payload"] == {"stripe_customer_id": row["stripe_customer_id"],
                                                         "value": "5"}
    assert billed_value(stack, row) == 5.0
    check_usage(stack, api, {identifier: 5})

    # A second rejection names the new identifier: it fails the row again, and
    # the next retry goes under yet another one.
    assert api.post("/_local/fake-stripe/meter-error", {"identifiers": [row["stripe_identifier"]]}).status_code == 200
    wait_for("the second meter error", lambda: get_usage(api, identifier)["stripe_status"] == "failed")
    assert api.post(f"/v1/usage/{identifier}/retry").status_code == 202
    again = settle(stack, api, [identifier])[identifier]
    assert again["stripe_status"] == "reported"
    assert again["stripe_identifier"] not in (identifier, row["stripe_identifier"])
    assert billed_value(stack, again) == 5.0


@pytest.mark.parametrize("status", [401, 403])
def test_usage_under_a_rejected_api_key_waits_then_drains_once_it_is_fixed(stack: LocalStack, api: Client,
                                                                           status: int) -> None:
    """A rotated or under-privileged key is the deployment's fault: the rows
    stay pending (no permanent failure, no manual retry) and are delivered
    by themselves once Stripe takes the key again."""
    quiet(stack, api)
    customer = new_customer(api)
    accepted = {uid(f"key{status}"): n for n in range(1, 4)}
    with delivery_paused(stack):
        put_many(api, {i: usage_body(customer, v) for i, v in accepted.items()})
        fake(stack).add_fault("report_meter_event", status, times=10_000)
    wait_for("two refused deliveries", lambda: sends(stack, set(accepted)) >= 2)
    with delivery_paused(stack):
        rows = {i: get_usage(api, i) for i in accepted}
        assert {r["stripe_status"] for r in rows.values()} == {"pending"}, rows
        assert all(r["stripe_error"] is None for r in rows.values())
        fake(stack).clear_faults()  # the key is fixed
    rows = check_usage(stack, api, accepted)
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    assert pending_faults(stack, api) == {}
