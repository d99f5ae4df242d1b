"""Reconcile: stored Stripe events applied to the projection by the
webhook_processor, through the local stack's stream (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.dynamodb import client
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.webhook_helpers import (
    FINISHED,
    accepted,
    customer_by_processor_id,
    customer_object,
    event,
    fake,
    ledger,
    settle,
    settled,
    stripe_object,
    uid,
    webhook_event,
)

pytestmark = pytest.mark.integration
REDRIVE = "/_local/schedules/WebhookProcessorFunction.RedriveDeferred/trigger"


def api_customer(api: Client, owner_type: str = "User") -> dict[str, Any]:
    """A customer made through the API, once Stripe's customer.created for it
    came and settled against the watermark the API set from Stripe's answer."""
    resp = api.put(f"/v1/owners/{owner_type}/{uid()}/customer", {"email": "ada@example.com"})
    assert resp.status_code == 201, resp.text
    settled(api)
    row = customer(api, resp.json()["id"])
    assert row["last_stripe_event_id"].startswith("api_") and row["lock_version"] == resp.json()["lock_version"]
    return row


def customer(api: Client, customer_id: str, include: str = "") -> dict[str, Any]:
    resp = api.get(f"/v1/customers/{customer_id}" + (f"?include={include}" if include else ""))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def webhook_customer(api: Client, stack: LocalStack, **changes: Any) -> dict[str, Any]:
    """A customer that exists because Stripe told us (customer.created)."""
    processor_id = f"cus_hook_{uid()}"
    created = event("customer.created", customer_object(processor_id, **{"metadata": {}, **changes}))
    accepted(api, created)
    assert settle(stack, api, created["id"])[0]["status"] == "processed"
    found = customer_by_processor_id(api, processor_id)
    assert found is not None
    return found


def caused_by(api: Client, customer_id: str, event_id: str) -> list[dict[str, Any]]:
    return [e for e in ledger(api, customer_id) if e["caused_by_webhook_event_id"] == event_id]


# -- ordering ------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(gaps=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=3), data=st.data())
def test_any_delivery_order_of_customer_updates_ends_at_the_newest_state(api: Client, stack: LocalStack,
                                                                         gaps: list[int], data: st.DataObject
                                                                         ) -> None:
    # Stripe's updates happened in list order; a gap of 0 puts two in the same second.
    row = api_customer(api)
    current = fake(stack).retrieve_customer(row["processor_id"])
    created = [row["last_stripe_event_ts"] + 1]  # after what Stripe said when it made the customer
    for gap in gaps:
        created.append(created[-1] + gap)
    versions = [dict(current, name=f"version {i}", metadata={**current["metadata"], "version": str(i)})
                for i in range(len(created))]
    fake(stack).put_object(versions[-1])  # what Stripe holds now: the newest
    events = [event("customer.updated", v, created=c) for v, c in zip(versions, created, strict=True)]
    delivery = data.draw(st.permutations(range(len(events))), label="delivery order")
    for i in delivery:
        accepted(api, events[i])
    outcomes = settle(stack, api, *(e["id"] for e in events))
    assert {o["status"] for o in outcomes} <= {"processed", "stale"}, outcomes
    final = customer(api, row["id"])
    assert final["data"]["name"] == versions[-1]["name"]
    assert final["data"]["metadata"]["version"] == str(len(created) - 1)
    assert final["last_stripe_event_ts"] == created[-1]


def test_an_older_event_is_stale_and_changes_nothing(api: Client, stack: LocalStack) -> None:
    row = api_customer(api)
    now = row["last_stripe_event_ts"] + 1
    newer = event("customer.updated", customer_object(row["processor_id"], name="Newer"), created=now)
    accepted(api, newer)
    settle(stack, api, newer["id"])
    before = customer(api, row["id"])
    older = event("customer.updated", customer_object(row["processor_id"], name="Older"), created=now - 10)
    accepted(api, older)
    (stale,) = settle(stack, api, older["id"])
    assert stale["status"] == "stale"
    after = customer(api, row["id"])
    assert after == before
    assert (after["data"]["name"], after["last_stripe_event_id"]) == ("Newer", newer["id"])
    assert caused_by(api, row["id"], older["id"]) == []


def test_an_event_in_the_watermark_second_applies_the_re_fetched_object(api: Client, stack: LocalStack) -> None:
    row = api_customer(api)
    now = row["last_stripe_event_ts"] + 1
    first = event("customer.updated", customer_object(row["processor_id"], name="First"), created=now)
    accepted(api, first)
    settle(stack, api, first["id"])
    canonical = dict(fake(stack).retrieve_customer(row["processor_id"]), name="Canonical")
    fake(stack).put_object(canonical)
    calls = len(fake(stack).calls)
    # Same second, its own (possibly older) snapshot: neither event's object can be trusted.
    second = event("customer.updated", customer_object(row["processor_id"], name="Second"), created=now)
    accepted(api, second)
    (applied,) = settle(stack, api, second["id"])
    assert applied["status"] == "processed"
    after = customer(api, row["id"])
    assert after["data"]["name"] == "Canonical"
    assert (after["last_stripe_event_ts"], after["last_stripe_event_id"]) == (now, second["id"])
    fetched = [c["args"] for c in fake(stack).calls[calls:] if c["operation"] == "retrieve_object"]
    assert fetched == [{"object_type": "customer", "object_id": row["processor_id"]}]
    assert not {"address", "phone", "shipping"} & set(after["data"])


# -- customers -------------------------------------------------------------------------------


def test_customer_created_for_an_unknown_customer_with_owner_metadata_creates_an_owned_row(
        api: Client, stack: LocalStack) -> None:
    owner_id = uid()
    row = webhook_customer(api, stack, email="team@example.com",
                           metadata={"owner_type": "Team", "owner_id": owner_id, "plan": "pro"})
    assert (row["owner_type"], row["owner_id"]) == ("Team", owner_id)
    assert row["email"] == "team@example.com" and row["metadata"] == {"plan": "pro"}
    assert row["last_stripe_event_ts"] is not None
    entries = ledger(api, row["id"])
    assert [(e["type"], e["actor_type"]) for e in entries] == [("customer.created", "webhook")]
    # The user path finds it through the same owner guard: no second customer.
    creates = len([c for c in fake(stack).calls if c["operation"] == "create_customer"])
    again = api.put(f"/v1/owners/Team/{owner_id}/customer")
    assert again.status_code == 200 and again.json()["id"] == row["id"]
    assert len([c for c in fake(stack).calls if c["operation"] == "create_customer"]) == creates


def test_customer_created_without_owner_metadata_is_unowned(api: Client, stack: LocalStack) -> None:
    row = webhook_customer(api, stack)
    assert (row["owner_type"], row["owner_id"]) == (None, None)


def test_an_owner_that_already_has_a_customer_is_not_claimed_twice(api: Client, stack: LocalStack) -> None:
    owned = api_customer(api, "Org")
    other = webhook_customer(api, stack, metadata={"owner_type": "Org", "owner_id": owned["owner_id"]})
    assert other["id"] != owned["id"]
    assert (other["owner_type"], other["owner_id"]) == (None, None)
    assert api.put(f"/v1/owners/Org/{owned['owner_id']}/customer").json()["id"] == owned["id"]


def test_customer_created_for_a_customer_made_through_the_api_updates_that_row(api: Client, stack: LocalStack
                                                                              ) -> None:
    row = api_customer(api)
    # Stripe's own customer.created settled against the API's watermark: one creation.
    assert [(e["type"], e["actor_type"]) for e in ledger(api, row["id"])] == [("customer.created", "api")]
    # One from a later second (a clock behind Stripe's) updates that row, not a new one.
    stripe_side = fake(stack).retrieve_customer(row["processor_id"])
    created = event("customer.created", stripe_side, created=int(row["last_stripe_event_ts"]) + 1)
    accepted(api, created)
    settle(stack, api, created["id"])
    assert customer_by_processor_id(api, row["processor_id"])["id"] == row["id"]  # type: ignore[index]
    after = customer(api, row["id"])
    assert after["last_stripe_event_id"] == created["id"]
    assert (after["owner_type"], after["owner_id"]) == (row["owner_type"], row["owner_id"])
    # Recorded as what happened to the row: its creation stays the API's one.
    assert [(e["type"], e["actor_type"], e["data"].get("stripe_event_id")) for e in ledger(api, row["id"])] == [
        ("customer.updated", "webhook", created["id"]), ("customer.created", "api", None)]


def test_customer_deleted_marks_deleted_at_and_releases_the_owner(api: Client, stack: LocalStack) -> None:
    owner_id = uid()
    row = webhook_customer(api, stack, metadata={"owner_type": "Team", "owner_id": owner_id})
    deleted = event("customer.deleted", customer_object(row["processor_id"], metadata={}),
                    created=int(row["last_stripe_event_ts"]) + 5)
    accepted(api, deleted)
    (done,) = settle(stack, api, deleted["id"])
    assert done["status"] == "processed"
    after = customer(api, row["id"])
    assert after["deleted_at"] is not None
    assert [e["type"] for e in caused_by(api, row["id"], deleted["id"])] == ["customer.deleted"]
    fresh = api.put(f"/v1/owners/Team/{owner_id}/customer")
    assert fresh.status_code == 201 and fresh.json()["id"] != row["id"]


# -- children before their parent --------------------------------------------------------------


def test_payment_method_attached_before_its_customer_is_deferred_then_applied(api: Client, stack: LocalStack
                                                                             ) -> None:
    processor_id = f"cus_late_{uid()}"
    pm = stripe_object("payment_method", id=f"pm_late_{uid()}", customer=processor_id)
    attached = event("payment_method.attached", pm)
    accepted(api, attached)
    (deferred,) = settle(stack, api, attached["id"], until=("deferred", *FINISHED))
    assert deferred["status"] == "deferred"
    assert deferred["error"] == {"type": "parent_missing", "code": "customer_not_found",
                                 "message": f"waiting for customer {processor_id}"}
    assert deferred["next_attempt_at"] is not None
    listed = api.get("/v1/webhook-events", params={"status": "deferred", "limit": 100}).json()["data"]
    assert attached["id"] in {e["id"] for e in listed}

    # The parent arrives (older than the child, as Stripe created it first).
    parent = event("customer.created", customer_object(processor_id, metadata={}), created=attached["created"] - 1)
    accepted(api, parent)
    (parent_done, child_done) = settle(stack, api, parent["id"], attached["id"])
    assert (parent_done["status"], child_done["status"]) == ("processed", "processed")
    assert child_done["attempts"] == 2 and child_done["error"] is None and child_done["next_attempt_at"] is None
    row = customer_by_processor_id(api, processor_id)
    assert row is not None
    (method,) = customer(api, row["id"], "payment_methods")["payment_methods"]
    assert (method["id"], method["status"], method["brand"], method["last4"]) == (pm["id"], "attached", "visa", "4242")
    assert "fingerprint" not in method["data"].get("card", {}) and "billing_details" not in method["data"]
    deferred_listed = api.get("/v1/webhook-events", params={"status": "deferred", "limit": 100}).json()["data"]
    assert attached["id"] not in {e["id"] for e in deferred_listed}


def test_a_deferred_event_is_retried_on_schedule_then_failed_after_its_last_attempt(api: Client, stack: LocalStack
                                                                                   ) -> None:
    orphan = event("customer.subscription.created",
                   stripe_object("subscription", id=f"sub_orphan_{uid()}", customer=f"cus_never_{uid()}"))
    accepted(api, orphan)
    settle(stack, api, orphan["id"], until=("deferred", *FINISHED))
    # Not due yet: the schedule leaves it alone.
    assert api.post(REDRIVE).status_code == 200
    assert settle(stack, api, orphan["id"], until=("deferred",))[0]["attempts"] == 1
    table = client(stack.ddb_endpoint)
    name = stack.runtimes["WebhookProcessorFunction"].env["WEBHOOK_EVENTS_TABLE"]

    def make_due(deferrals: int) -> None:
        table.update_item(TableName=name, Key={"pk": {"S": orphan["id"]}},
                          UpdateExpression="SET next_attempt_at = :past, deferrals = :n",
                          ExpressionAttributeValues={":past": {"N": "1"}, ":n": {"N": str(deferrals)}})

    make_due(1)
    assert api.post(REDRIVE).status_code == 200
    (again,) = settle(stack, api, orphan["id"], until=("deferred", *FINISHED))
    assert (again["status"], again["attempts"]) == ("deferred", 2)
    make_due(12)  # the last allowed deferral
    api.post(REDRIVE)
    for _ in range(3):  # the schedule of the stack itself may have re-driven it first
        (failed,) = settle(stack, api, orphan["id"])
        if failed["status"] == "failed":
            break
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "parent_missing" and "after 12 attempts" in failed["error"]["message"]


# -- thin projections -----------------------------------------------------------------------------


def test_subscriptions_invoices_and_charges_hang_off_the_customer(api: Client, stack: LocalStack) -> None:
    row = webhook_customer(api, stack)
    pid = row["processor_id"]
    sub = event("customer.subscription.created", stripe_object("subscription", id=f"sub_{uid()}", customer=pid))
    inv = event("invoice.paid", stripe_object("invoice", id=f"in_{uid()}", customer=pid, status="paid",
                                              customer_phone="+15555550123"))
    charge = event("charge.succeeded", stripe_object("charge", id=f"ch_{uid()}", customer=pid))
    guest = event("charge.succeeded", stripe_object("charge", id=f"ch_guest_{uid()}", customer=None))
    for body in (sub, inv, charge, guest):
        accepted(api, body)
    assert {o["status"] for o in settle(stack, api, sub["id"], inv["id"], charge["id"], guest["id"])} == {"processed"}
    graph = customer(api, row["id"], "subscriptions,invoices,charges")
    assert [(s["id"], s["status"]) for s in graph["subscriptions"]] == [(sub["data"]["object"]["id"], "active")]
    assert [(i["id"], i["status"]) for i in graph["invoices"]] == [(inv["data"]["object"]["id"], "paid")]
    assert [c["id"] for c in graph["charges"]] == [charge["data"]["object"]["id"]]
    assert "customer_phone" not in graph["invoices"][0]["data"]
    card = graph["charges"][0]["data"]["payment_method_details"]["card"]
    assert "fingerprint" not in card and "billing_details" not in graph["charges"][0]["data"]
    types = {e["type"] for e in ledger(api, row["id"]) if e["actor_type"] == "webhook"}
    assert {"customer.subscription.created", "invoice.paid", "charge.succeeded"} <= types


def test_payment_method_detached_clears_the_default_that_pointed_at_it(api: Client, stack: LocalStack) -> None:
    pm_id = f"pm_default_{uid()}"
    settings_ = dict(stripe_object("customer")["invoice_settings"], default_payment_method=pm_id)
    row = webhook_customer(api, stack, invoice_settings=settings_)
    assert row["default_payment_method_id"] == pm_id
    at = int(row["last_stripe_event_ts"])
    attached = event("payment_method.attached",
                     stripe_object("payment_method", id=pm_id, customer=row["processor_id"]), created=at + 1)
    detached = event("payment_method.detached", stripe_object("payment_method", id=pm_id, customer=None),
                     created=at + 2, previous={"customer": row["processor_id"]})
    accepted(api, attached)
    accepted(api, detached)
    assert [o["status"] for o in settle(stack, api, attached["id"], detached["id"])] == ["processed", "processed"]
    after = customer(api, row["id"], "payment_methods")
    assert after["default_payment_method_id"] is None
    (method,) = after["payment_methods"]
    assert method["status"] == "detached" and method["detached_at"] is not None
    (entry,) = caused_by(api, row["id"], detached["id"])
    assert entry["data"]["default_cleared"] is True


# -- meter errors ----------------------------------------------------------------------------------


def test_a_thin_meter_error_event_is_fetched_and_handled(api: Client, stack: LocalStack) -> None:
    thin = fake(stack).raise_meter_error([f"never-accepted-{uid()}"])
    assert "data" not in thin and isinstance(thin["created"], str)
    accepted(api, thin)
    (handled,) = settle(stack, api, thin["id"])
    assert handled["status"] == "processed", handled
    assert webhook_event(api, thin["id"])["type"] == "v1.billing.meter.error_report_triggered"
