"""Stripe stays the source of truth, both ways, through the public surfaces
of a stack of its own (HTTP, the Fake's local routes, the template's stream
and schedule): a change made on Stripe's side reaches the row through its
webhook, a PATCH reaches Stripe's customer, an event only the events poll
sees is applied (once, whichever way it also comes), and a backfill killed
half way resumes and imports every object once.

Its own stack: the scenarios hold and skip the Fake's webhooks and script
crashes, which must not meet the session stack's other tests; and its
events poll takes events of any age (EventsPollMinAgeSeconds=0) so a test
need not wait a minute for one to age.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.fake_stripe import FakeProcessor
from devstack.stack import LocalStack
from tests.conftest import Client, running, stack_settings

pytestmark = pytest.mark.integration

POLL = "EventsPollFunction.Poll"
BACKFILL_STREAM = "BackfillFunction.Checkpoints"


@pytest.fixture(scope="module")
def sync_stack(function_log: Path) -> Iterator[LocalStack]:
    yield from running(stack_settings(function_log, concurrency=2, stack_name="billing-local-sync",
                                     parameters={"EventsPollMinAgeSeconds": "0"}))


@pytest.fixture(scope="module")
def api(sync_stack: LocalStack) -> Client:
    return Client(sync_stack.url)


def fake(stack: LocalStack) -> FakeProcessor:
    assert stack.fake_stripe is not None
    return stack.fake_stripe.fake


def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def settled(api: Client) -> None:
    ok(api.post("/_local/settle"))


def new_customer(api: Client, **body: Any) -> dict[str, Any]:
    customer = ok(api.put(f"/v1/owners/User/{uuid.uuid4().hex[:12]}/customer", body or None), 201)
    settled(api)  # Stripe's customer.created, applied
    return ok(api.get(f"/v1/customers/{customer['id']}"))


def ledger(api: Client, customer_id: str) -> list[dict[str, Any]]:
    return list(ok(api.get(f"/v1/customers/{customer_id}/events?limit=100"))["data"])


def test_a_dashboard_change_reaches_the_row_through_its_webhook(api: Client) -> None:
    customer = new_customer(api, email="portal@example.com", name="Before", preferred_timezone="Europe/Paris")
    changed = ok(api.post(f"/_local/fake-stripe/dashboard/customer/{customer['processor_id']}",
                          {"email": "fixed@example.com", "name": "After", "metadata": {"tier": "gold"}}))
    assert changed["email"] == "fixed@example.com"
    settled(api)
    row = ok(api.get(f"/v1/customers/{customer['id']}"))
    assert (row["email"], row["name"], row["metadata"], row["preferred_timezone"]) == (
        "fixed@example.com", "After", {"tier": "gold"}, "Europe/Paris")
    assert row["lock_version"] > customer["lock_version"] and row["last_stripe_event_id"].startswith("evt_fake_")
    newest = ledger(api, customer["id"])[0]
    assert newest["type"] == "customer.updated" and newest["actor_type"] == "webhook"
    assert {"email", "name", "metadata"} <= set(newest["data"]["changed_fields"])
    assert "fixed@example.com" not in str(newest)  # field names, never values


def test_a_patch_reaches_the_fakes_customer_and_its_webhook_settles_quietly(api: Client,
                                                                            sync_stack: LocalStack) -> None:
    customer = new_customer(api, email="old@example.com")
    stale = api.patch(f"/v1/customers/{customer['id']}", {"email": "late@example.com"},
                      headers={"If-Match": f'"{customer["lock_version"] - 1}"'})
    assert stale.status_code == 412 and stale.json()["error"]["type"] == "precondition_failed"
    patched = api.patch(f"/v1/customers/{customer['id']}", {"email": "new@example.com", "name": "Renamed"},
                        headers={"If-Match": f'"{customer["lock_version"]}"', "Idempotency-Key": uuid.uuid4().hex})
    body = ok(patched)
    assert (body["email"], body["name"]) == ("new@example.com", "Renamed")
    stripe_side = fake(sync_stack).retrieve_customer(customer["processor_id"])
    assert (stripe_side["email"], stripe_side["name"]) == ("new@example.com", "Renamed")
    updates = [c for c in fake(sync_stack).calls if c["operation"] == "update_customer"
               and c["args"]["customer_id"] == customer["processor_id"]]
    assert len(updates) == 1 and updates[0]["args"]["fields"]["email"] == "new@example.com"  # the 412 sent nothing
    entries = len(ledger(api, customer["id"]))
    settled(api)  # Stripe's customer.updated for the PATCH itself
    after = ok(api.get(f"/v1/customers/{customer['id']}"))
    assert (after["email"], after["name"], after["lock_version"]) == ("new@example.com", "Renamed",
                                                                     body["lock_version"])
    assert len(ledger(api, customer["id"])) == entries
    refused = api.patch(f"/v1/customers/{customer['id']}", {"email": "not-an-email"})
    assert refused.status_code == 422


def test_an_event_only_the_poll_sees_is_processed_and_applied_once(api: Client, sync_stack: LocalStack) -> None:
    customer = new_customer(api, name="Unseen")
    ok(api.post("/_local/fake-stripe/delivery", {"hold": True}))
    try:
        ok(api.post(f"/_local/fake-stripe/dashboard/customer/{customer['processor_id']}", {"name": "Seen by poll"}))
        event = fake(sync_stack).list_objects("event", limit=1)["data"][0]
        assert event["type"] == "customer.updated"
        assert api.get(f"/v1/webhook-events/{event['id']}").status_code == 404  # no webhook came
        ran = ok(api.post(f"/_local/schedules/{POLL}/trigger"))["result"]
        assert ran["stored"] >= 1 and ran["caught_up"]
        assert sync_stack.drain()
        stored = ok(api.get(f"/v1/webhook-events/{event['id']}"))
        assert (stored["status"], stored["received_via"]) == ("processed", "poll")
        assert ok(api.get(f"/v1/customers/{customer['id']}"))["name"] == "Seen by poll"
    finally:
        ok(api.post("/_local/fake-stripe/delivery", {"hold": False}))
    settled(api)  # then Stripe's webhook for it: a duplicate of the stored event
    assert ok(api.get(f"/v1/webhook-events/{event['id']}"))["received_via"] == "poll"
    applied = [e for e in ledger(api, customer["id"]) if e["data"].get("stripe_event_id") == event["id"]]
    assert len(applied) == 1
    assert ok(api.post(f"/_local/schedules/{POLL}/trigger"))["result"]["stored"] == 0


def wait_for_backfill(api: Client, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ok(api.get(f"/v1/sync/backfill/{run_id}"))
        if run["status"] == "completed":
            return run
        time.sleep(0.2)
    raise AssertionError(f"backfill {run_id} did not finish: {run}")


def test_a_backfill_killed_half_way_resumes_and_imports_every_object_once(api: Client,
                                                                          sync_stack: LocalStack) -> None:
    stripe = fake(sync_stack)
    owners = [f"acct-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    ok(api.post("/_local/fake-stripe/delivery", {"hold": True}))
    try:  # an account that existed before this deployment: its events were never sent here
        made = []
        for n, owner in enumerate(owners):
            customer = stripe.create_customer(idempotency_key=f"existing-{owner}", email=f"{owner}@example.com",
                                              name=f"Existing {n}", metadata={"owner_type": "Org", "owner_id": owner})
            stripe.attach_payment_method("pm_card_visa", customer_id=customer["id"],
                                         idempotency_key=f"existing-pm-{owner}")
            made.append(customer)
    finally:
        ok(api.post("/_local/fake-stripe/delivery", {"hold": False, "skip": True}))
    for owner in owners:
        assert api.get(f"/v1/owners/Org/{owner}/billing").status_code == 404  # nothing here yet
    assert sync_stack.streams is not None
    errors_before = sync_stack.streams.poller(BACKFILL_STREAM).stats().function_errors
    # The third list call (the second page of customers) kills the worker process right after Stripe answered.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "list_objects", "crash": True, "skip": 2}))
    everyone = len(stripe.list_objects("customer", limit=100)["data"])

    run = ok(api.post("/v1/sync/backfill", {"types": ["customer", "payment_method"], "page_size": 2}), 202)
    assert run["status"] == "running" and [t["type"] for t in run["types"]] == ["customer", "payment_method"]
    done = wait_for_backfill(api, run["id"])

    assert sync_stack.streams.poller(BACKFILL_STREAM).stats().function_errors > errors_before  # it did die
    assert ok(api.get("/_local/fake-stripe/state"))["pending_faults"] == {}
    customers, methods = done["types"]
    assert customers["seen"] == everyone and customers["failed"] == 0 and customers["done"]
    assert customers["applied"] >= len(made)  # the account's own, and nothing twice
    assert methods["applied"] == methods["seen"] >= len(made)
    for owner, customer in zip(owners, made, strict=True):
        found = ok(api.get(f"/v1/customers?owner_type=Org&owner_id={owner}"))["data"]
        assert [c["processor_id"] for c in found] == [customer["id"]]  # linked to its owner, once
        row = ok(api.get(f"/v1/customers/{found[0]['id']}?include=payment_methods"))
        assert row["email"] == f"{owner}@example.com" and len(row["payment_methods"]) == 1
        assert [e["type"] for e in ledger(api, row["id"])].count("customer.created") == 1

    again = wait_for_backfill(api, ok(api.post("/v1/sync/backfill", {"types": ["customer", "payment_method"]}),
                                      202)["id"])
    assert again["totals"]["applied"] == 0 and again["totals"]["unchanged"] == again["totals"]["seen"]
    assert api.post(f"/v1/sync/backfill/{again['id']}/resume").status_code == 409
    assert api.get("/v1/sync/backfill/bf_unknown").status_code == 404
    assert api.post("/v1/sync/backfill", {"types": ["refund"]}).status_code == 422


def test_make_backfill_starts_a_run_and_draws_it_until_it_completes(api: Client, sync_stack: LocalStack) -> None:
    from io import StringIO

    from devstack import backfill as make_backfill

    out = StringIO()
    assert make_backfill.main(["--url", sync_stack.url, "--types", "product", "price"], out=out) == 0
    lines = out.getvalue().splitlines()
    run_id = lines[0].split()[1]
    assert ok(api.get(f"/v1/sync/backfill/{run_id}"))["status"] == "completed"
    assert any(line.strip().startswith("product") and "done" in line and "#" * 24 in line for line in lines)
    assert lines[-1].strip().startswith("completed:") and "0 failed" in lines[-1]


def wait_until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_detach_landing_during_the_backfill_walk_ends_detached(api: Client, sync_stack: LocalStack) -> None:
    stripe = fake(sync_stack)
    customer = new_customer(api)
    pm = ok(api.post(f"/v1/customers/{customer['id']}/payment-methods", {"payment_method_id": "pm_card_visa"}), 201)
    settled(api)
    calls_before = len(stripe.calls)
    # The walk's second list call (this customer's payment methods: it is Stripe's newest
    # customer, first on the page) answers 3 s late, with the method still attached.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "list_objects", "delay": 3, "after": True, "skip": 1}))
    run = ok(api.post("/v1/sync/backfill", {"types": ["payment_method"], "page_size": 100}), 202)
    wait_until(lambda: any(c["operation"] == "list_objects" and (c["args"].get("params") or {}).get("customer")
                           == customer["processor_id"] for c in stripe.calls[calls_before:]))
    # Meanwhile the customer removes the card in Stripe's portal; its webhook is applied.
    stripe.detach_payment_method(pm["id"], idempotency_key=f"portal-detach-{pm['id']}")
    settled(api)
    done = wait_for_backfill(api, run["id"])
    assert done["types"][0]["seen"] >= 1 and done["types"][0]["failed"] == 0
    after = ok(api.get(f"/v1/customers/{customer['id']}?include=payment_methods"))["payment_methods"]
    assert [(p["id"], p["status"]) for p in after] == [(pm["id"], "detached")]  # the walk's copy was older


def test_a_meter_error_report_whose_webhook_is_lost_is_recovered_by_the_poll(api: Client,
                                                                               sync_stack: LocalStack) -> None:
    from tests.integration.usage_helpers import get_usage, put_usage, settle, usage_body

    customer = new_customer(api)
    bad, good = f"bad-{uuid.uuid4().hex[:10]}", f"good-{uuid.uuid4().hex[:10]}"
    for identifier in (bad, good):
        put_usage(api, identifier, usage_body(customer))
    settle(sync_stack, api, [bad, good])
    # Stripe raises the report; its thin event is never delivered here.
    thin = fake(sync_stack).raise_meter_error([bad])
    assert api.get(f"/v1/webhook-events/{thin['id']}").status_code == 404
    ran = ok(api.post(f"/_local/schedules/{POLL}/trigger"))["result"]
    assert ran["stored"] >= 1
    stored: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert sync_stack.drain()
        stored = ok(api.get(f"/v1/webhook-events/{thin['id']}"))
        if stored["status"] == "processed" and get_usage(api, bad)["stripe_status"] == "failed":
            break
        time.sleep(0.1)
    assert (stored["status"], stored["received_via"], stored["type"]) == (
        "processed", "poll", "v1.billing.meter.error_report_triggered")
    row = get_usage(api, bad)
    assert row["stripe_status"] == "failed" and row["stripe_error"]["type"] == "meter_error"
    assert get_usage(api, good)["stripe_status"] == "reported"
    assert ok(api.post(f"/_local/schedules/{POLL}/trigger"))["result"]["stored"] == 0  # once
