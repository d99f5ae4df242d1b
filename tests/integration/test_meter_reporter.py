"""Delivery of usage to Stripe through the real stream path (v1 mode, the
session stack): faults, crashes, permanent failures, retry, the dead-letter
view and meter error reports (DESIGN.md section 4, Delivery)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.usage_helpers import (
    REPORTER,
    billed,
    fake,
    get_usage,
    list_all,
    new_customer,
    put_usage,
    settle,
    uid,
    usage_body,
)

ROOT = Path(__file__).resolve().parents[2]


def fault(api: Client, status: int, times: int = 1, **extra: Any) -> None:
    resp = api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": status,
                                                   "times": times, **extra})
    assert resp.status_code == 200, resp.text


def pending_faults(api: Client) -> int:
    return int(api.get("/_local/fake-stripe/state").json()["pending_faults"].get("report_meter_event", 0))


def meter_calls(stack: LocalStack, identifiers: set[str]) -> list[dict[str, Any]]:
    return [c for c in fake(stack).calls
            if c["operation"] == "create_meter_event" and c["args"]["identifier"] in identifiers]


def quiet(stack: LocalStack, api: Client) -> None:
    """Start from a stack with nothing in flight, so scripted faults hit this test's calls."""
    assert stack.drain(timeout=60)
    assert pending_faults(api) == 0


def events_of(api: Client, customer_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/v1/customers/{customer_id}/events?limit=100").json()["data"])


# -- faults ---------------------------------------------------------------------------------


def test_fault_storm_delivers_every_identifier_exactly_once(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    rng = random.Random(20251121)  # noqa: S311 - a scripted storm: the same faults every run
    customers = [new_customer(api) for _ in range(3)]
    dead_letters = len(api.get("/_local/on-failure").json()["data"])
    sent: dict[str, tuple[str, str, int]] = {}
    scripted = lost_answers = 0
    for _ in range(4):
        # Faults queue up and hit the next meter calls: a round's first calls
        # fail (500, 502, 503, 429, no response; some after Stripe took the
        # event), then the rest of its calls go through.
        for _ in range(rng.randint(4, 7)):
            after = rng.random() < 0.25
            fault(api, rng.choice([500, 502, 503, 429, 0]), after=after)
            scripted += 1
            lost_answers += after
        batch = []
        for _ in range(12):
            customer = rng.choice(customers)
            event_name, value = rng.choice(["api_requests", "storage_gb"]), rng.randint(0, 50)
            identifier = uid("storm")
            put_usage(api, identifier, usage_body(customer, value, event_name=event_name))
            sent[identifier] = (customer["processor_id"], event_name, value)
            batch.append(identifier)
        settle(stack, api, batch)

    rows = settle(stack, api, list(sent))
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    assert pending_faults(api) == 0
    # Billed exactly once each, with what was accepted.
    received = billed(stack, list(sent))
    assert set(received) == set(sent)
    for identifier, (stripe_id, event_name, value) in sent.items():
        entry = received[identifier]
        assert (entry["payload"], entry["event_name"]) == (
            {"stripe_customer_id": stripe_id, "value": str(value)}, event_name)
    # Stripe saw an identifier twice only where it had taken the event and
    # its answer was lost: a resend it deduplicated, not a second charge.
    assert sum(e["received"] - 1 for e in received.values()) <= lost_answers
    calls = meter_calls(stack, set(sent))
    failed_calls = [c for c in calls if "error" in c]
    assert len(failed_calls) == scripted
    assert scripted / len(calls) > 0.2, (scripted, len(calls))
    # Nothing needed the on-failure destination.
    assert len(api.get("/_local/on-failure").json()["data"]) == dead_letters


def test_a_crash_after_stripe_took_the_event_bills_nothing_twice(stack: LocalStack, api: Client) -> None:
    """Every try of the first invocation reaches Stripe, which records the
    event, and then the answer is lost: the invocation ends with the row still
    pending (as a crash before the DynamoDB update would leave it), and the
    stream's redelivery resends it under the same identifier."""
    quiet(stack, api)
    tries = int(stack.runtimes[REPORTER].env["METER_TRANSIENT_TRIES"])
    invocations = stack.runtimes[REPORTER].invocations
    fault(api, 500, times=tries, after=True)
    customer = new_customer(api)
    identifier = uid("crash")
    put_usage(api, identifier, usage_body(customer, 7))
    row = settle(stack, api, [identifier])[identifier]
    assert (row["stripe_status"], row["attempts"]) == ("reported", 1)
    assert stack.runtimes[REPORTER].invocations >= invocations + 2  # delivered again by the stream
    entry = billed(stack, [identifier])[identifier]
    assert entry["payload"]["value"] == "7"
    assert entry["received"] == tries + 1  # every resend arrived, and was counted once
    calls = meter_calls(stack, {identifier})
    assert len(calls) == tries + 1
    assert all("error" in c for c in calls[:tries]) and "error" not in calls[-1]


# -- permanent failures, the dead-letter view, retry --------------------------------------------


def test_a_permanent_rejection_fails_the_row_and_retry_delivers_it(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    fault(api, 400, code="parameter_invalid_integer", message="Invalid integer: " + "9" * 2000)
    customer = new_customer(api)
    identifier = uid("reject")
    put_usage(api, identifier, usage_body(customer, 4))
    row = settle(stack, api, [identifier])[identifier]
    assert row["stripe_status"] == "failed"
    assert row["attempts"] == 1 and row["reported_at"] is None
    error = row["stripe_error"]
    assert set(error) == {"type", "code", "message"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "parameter_invalid_integer")
    assert error["message"].startswith("Invalid integer: 999") and len(error["message"]) <= 512
    assert identifier not in billed(stack, [identifier])
    assert identifier in {r["identifier"] for r in list_all(api, {"status": "failed"}, limit=50)}

    retried = api.post(f"/v1/usage/{identifier}/retry")
    assert retried.status_code == 202, retried.text
    assert (retried.json()["stripe_status"], retried.json()["stripe_error"]) == ("pending", None)
    err = assert_error(api.post(f"/v1/usage/{identifier}/retry"), 409, "conflict")
    assert err["error"]["details"]["stripe_status"] in ("pending", "reported")

    row = settle(stack, api, [identifier])[identifier]
    assert (row["stripe_status"], row["attempts"], row["stripe_error"]) == ("reported", 2, None)
    assert billed(stack, [identifier])[identifier]["received"] == 1
    assert identifier not in {r["identifier"] for r in list_all(api, {"status": "failed"}, limit=50)}
    # Every transition is stamped on the row, its own audit record: no ledger row.
    assert [e for e in events_of(api, customer["id"]) if e["type"].startswith("usage.")] == []


def test_the_dead_letter_view_pages_through_every_failed_row_newest_first(stack: LocalStack,
                                                                          api: Client) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    identifiers = [uid("dlq") for _ in range(7)]
    fault(api, 400, code="meter_event_invalid_value", times=len(identifiers))
    for identifier in identifiers:
        put_usage(api, identifier, usage_body(customer))
    assert {r["stripe_status"] for r in settle(stack, api, identifiers).values()} == {"failed"}

    listed = list_all(api, {"status": "failed"}, limit=2)
    seen = [r["identifier"] for r in listed]
    assert len(seen) == len(set(seen))  # no row twice across pages (and shards)
    assert set(identifiers) <= set(seen)
    assert {r["stripe_status"] for r in listed} == {"failed"}
    updated = [r["updated_at"] for r in listed]
    assert updated == sorted(updated, reverse=True)
    assert not set(identifiers) & {r["identifier"] for r in list_all(api, {"status": "pending"}, limit=50)}
    by_customer = list_all(api, {"customer_id": customer["id"], "status": "failed"})
    assert {r["identifier"] for r in by_customer} == set(identifiers)


# -- meter error reports ----------------------------------------------------------------------


def _run_meter_error_worker(stack: LocalStack, event_id: str) -> int:
    env = {**os.environ, **stack.runtimes["ApiFunction"].env, "PYTHONPATH": f"{ROOT / 'layers/common'}:{ROOT}"}
    assert stack.fake_processor_url is not None
    out = subprocess.run(  # noqa: S603 - our own worker script
        [sys.executable, str(ROOT / "tests/integration/meter_error_worker.py"), event_id,
         "v1.billing.meter.error_report_triggered", stack.fake_processor_url],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout.strip().splitlines()[-1])["moved"])


def test_meter_error_report_fails_the_named_rows_even_if_reported(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    bad, good = uid("merr"), uid("merr")
    for identifier in (bad, good):
        put_usage(api, identifier, usage_body(customer))
    settle(stack, api, [bad, good])
    thin = fake(stack).raise_meter_error([bad, f"never-accepted-{uid()}", "not a valid identifier!"])
    assert "data" not in thin

    assert _run_meter_error_worker(stack, thin["id"]) == 1
    row = get_usage(api, bad)
    assert row["stripe_status"] == "failed"
    assert row["stripe_error"]["type"] == "meter_error"
    assert row["stripe_error"]["code"] == "meter_event_customer_not_found"
    assert row["stripe_error"]["message"] == f"Customer {customer['processor_id']} not found."
    assert row["reported_at"] is not None  # when Stripe first took it, kept
    assert get_usage(api, good)["stripe_status"] == "reported"
    assert bad in {r["identifier"] for r in list_all(api, {"status": "failed"}, limit=50)}
    assert bad not in {r["identifier"] for r in list_all(api, {"customer_id": customer["id"], "status": "reported"})}
    # The same report again moves nothing: the row is not written again. The
    # change is stamped on the row (its own audit record), no ledger row.
    assert _run_meter_error_worker(stack, thin["id"]) == 0
    again = get_usage(api, bad)
    assert (again["updated_at"], again["stripe_status"]) == (row["updated_at"], "failed")
    assert [e for e in events_of(api, customer["id"]) if e["type"].startswith("usage.")] == []


def test_meter_error_route_delivers_a_signed_thin_event_that_fails_the_rows(stack: LocalStack,
                                                                            api: Client) -> None:
    customer = new_customer(api)
    identifiers = [uid("route") for _ in range(2)]
    for identifier in identifiers:
        put_usage(api, identifier, usage_body(customer))
    settle(stack, api, identifiers)
    resp = api.post("/_local/fake-stripe/meter-error", {"identifiers": identifiers, "code": "archived_meter"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["event"]["type"] == "v1.billing.meter.error_report_triggered"
    assert "data" not in body["event"]
    assert body["delivery"]["status"] == 200, body["delivery"]
    assert body["delivery"]["body"]["received"] is True
    rows = {i: get_usage(api, i) for i in identifiers}
    for _ in range(3):  # the webhook processor runs from its own stream
        assert stack.drain(timeout=60)
        rows = {i: get_usage(api, i) for i in identifiers}
        if all(r["stripe_status"] == "failed" for r in rows.values()):
            break
    assert {r["stripe_status"] for r in rows.values()} == {"failed"}
    assert {r["stripe_error"]["code"] for r in rows.values()} == {"archived_meter"}
    assert all(r["updated_at"] >= r["reported_at"] for r in rows.values())
    assert Counter(e["type"] for e in events_of(api, customer["id"]))["usage.failed"] == 0  # the row is the record


def test_meter_error_route_rejects_a_request_without_identifiers(api: Client) -> None:
    bodies: list[dict[str, Any]] = [{}, {"identifiers": []}, {"identifiers": [3]}]
    for body in bodies:
        assert api.post("/_local/fake-stripe/meter-error", body).status_code == 400
