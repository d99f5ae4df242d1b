"""Cancels under faults (issue 12): the invariants of tests/faults/invariants.py
with cancels in them. accepted = reported + failed + canceled, nothing
pending left; a canceled row is never billed, and one canceled while
pending never reaches Stripe at all; whatever the order of a cancel and a
delivery, and with Stripe or DynamoDB failing on the way."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import check_usage, pending_faults, quiet
from tests.integration.usage_helpers import (
    delivery_paused,
    fake,
    new_customer,
    put_many,
    settle,
    uid,
    usage_body,
)


def stripe_fault(api: Client, operation: str, status: int, times: int = 1) -> None:
    resp = api.post("/_local/fake-stripe/faults", {"operation": operation, "status": status, "times": times})
    assert resp.status_code == 200, resp.text


def cancel(api: Client, identifier: str) -> Any:
    return api.post(f"/v1/usage/{identifier}/cancel")


def test_cancels_at_every_stage_while_stripe_fails(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    customers = [new_customer(api) for _ in range(2)]
    accepted = {uid("cx"): n for n in range(10)}
    ids = list(accepted)
    while_pending, after_report = ids[:4], ids[4:7]
    with delivery_paused(stack):
        put_many(api, {i: usage_body(customers[n % 2], v) for n, (i, v) in enumerate(accepted.items())})
        with ThreadPoolExecutor(max_workers=4) as pool:  # canceled before any delivery
            assert {r.status_code for r in pool.map(lambda i: cancel(api, i), while_pending)} == {200}
        stripe_fault(api, "report_meter_event", 503, times=3)  # the first sends fail, then go through
    rows = settle(stack, api, ids)
    assert {rows[i]["stripe_status"] for i in while_pending} == {"canceled"}
    assert {rows[i]["stripe_status"] for i in ids[4:]} == {"reported"}

    # Reported events: the first adjustment fails at Stripe (502 to the caller,
    # the row stays reported); sent again, every cancel goes through.
    stripe_fault(api, "cancel_meter_event", 503)
    first = cancel(api, after_report[0])
    assert first.status_code == 502 and first.json()["error"]["type"] == "processor_error", first.text
    assert settle(stack, api, [after_report[0]])[after_report[0]]["stripe_status"] == "reported"
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert {r.status_code for r in pool.map(lambda i: cancel(api, i), after_report)} == {200}

    # An event Stripe refused for good is failed, and is canceled without Stripe.
    rejected = uid("cx-rejected")
    stripe_fault(api, "report_meter_event", 400)
    put_many(api, {rejected: usage_body(customers[0], 99)})
    assert settle(stack, api, [rejected])[rejected]["stripe_status"] == "failed"
    assert cancel(api, rejected).status_code == 200
    accepted[rejected] = 99

    check_usage(stack, api, accepted, canceled={*while_pending, *after_report, rejected},
                never_sent=set(while_pending))
    assert pending_faults(stack, api) == {}


def test_a_storm_of_cancels_races_the_deliveries_and_nothing_canceled_is_billed(stack: LocalStack,
                                                                               api: Client) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    accepted = {uid("storm"): n for n in range(30)}
    canceled = set(list(accepted)[::3])
    with delivery_paused(stack):
        put_many(api, {i: usage_body(customer, v) for i, v in accepted.items()})
    # Delivery runs while each of these is canceled four times at once: every
    # cancel lands before the send (never sent), during it (the reporter
    # cancels it at Stripe) or after the report (an adjustment). Each answers 200.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda i: cancel(api, i).status_code, [i for i in canceled for _ in range(4)]))
    assert set(statuses) == {200}
    rows = check_usage(stack, api, accepted, canceled=canceled)
    assert all(rows[i]["canceled_at"] for i in canceled)
    adjusted = [c["args"]["identifier"] for c in fake(stack).calls if c["operation"] == "cancel_meter_event"]
    received = {e["identifier"] for e in fake(stack).meter_events}
    # An event Stripe received and that ended canceled was canceled there: at most one adjustment that took.
    assert {i for i in canceled if i in received} <= set(adjusted)
    assert pending_faults(stack, api) == {}


def test_a_cancel_throttled_past_the_retries_is_503_and_its_resend_cancels_once(stack: LocalStack,
                                                                               api: Client) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    identifier = uid("cx-throttled")
    with delivery_paused(stack):
        put_many(api, {identifier: usage_body(customer, 5)})
        table = stack.runtimes["ApiFunction"].env["METER_EVENTS_TABLE"]
        resp = api.post("/_local/dynamodb/faults", {"operation": "UpdateItem", "error": "ThrottlingException",
                                                    "times": 4, "table": table})  # PynamoDB's 1 + 3 attempts
        assert resp.status_code == 200, resp.text
        throttled = cancel(api, identifier)
        assert throttled.status_code == 503 and throttled.headers["Retry-After"] == "1", throttled.text
        assert status_of(api, identifier) == "pending"  # nothing written
        assert cancel(api, identifier).status_code == 200
    check_usage(stack, api, {identifier: 5}, canceled={identifier}, never_sent={identifier})
    assert pending_faults(stack, api) == {}


def status_of(api: Client, identifier: str) -> str:
    return str(api.get(f"/v1/usage/{identifier}").json()["stripe_status"])
