"""Customers, payment methods and the ledger through HTTP against the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.webhook_helpers import accepted, event, kinds, settle, settled, stripe_object, uid, webhooks_held

ROOT = Path(__file__).resolve().parents[2]


def owner() -> str:
    return f"/v1/owners/User/{uuid.uuid4()}/customer"


def events_of(api: Client, customer_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert resp.status_code == 200
    return list(resp.json()["data"])


def fake_calls(api: Client, operation: str) -> list[dict[str, Any]]:
    calls = api.get("/_local/fake-stripe/calls").json()["data"]
    return [c for c in calls if c["operation"] == operation]


# -- fetch-or-create ------------------------------------------------------------------


def test_fetch_or_create_creates_then_returns_the_same_customer(api: Client) -> None:
    path = owner()
    first = api.put(path, {"email": "a@example.com", "name": "Ada", "currency": "eur",
                           "metadata": {"plan": "pro"}})
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {
        "id", "owner_type", "owner_id", "processor", "processor_id", "email", "name", "currency", "tax_exempt",
        "preferred_locale", "preferred_timezone", "metadata", "data", "default_payment_method_id", "lock_version",
        "last_stripe_event_ts", "last_stripe_event_id", "inserted_at", "updated_at", "deleted_at"}
    assert body["processor"] == "fake"
    assert body["processor_id"].startswith("cus_fake_")
    assert body["metadata"] == {"plan": "pro"}
    assert body["owner_type"] == "User"
    assert first.headers["ETag"] == f'"{body["lock_version"]}"'
    assert not {"address", "phone", "shipping"} & set(body["data"])
    assert body["inserted_at"].endswith("Z")

    again = api.put(path)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    # The processor's customer.created webhook follows, as Stripe sends it for an API-made
    # customer, and settles against the watermark the API set from Stripe's answer: one creation.
    settled(api)
    assert kinds(events_of(api, body["id"])) == [("customer.created", "api")]
    assert api.get(f"/v1/customers/{body['id']}").json()["lock_version"] == body["lock_version"]


def test_ten_concurrent_fetch_or_creates_give_one_customer(api: Client) -> None:
    owner_id = str(uuid.uuid4())
    path = f"/v1/owners/Team/{owner_id}/customer"
    customers_before = api.get("/_local/fake-stripe/state").json()["customers"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: api.put(path, {"email": "race@example.com"}), range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    processor_ids = {r.json()["processor_id"] for r in responses}
    assert len(ids) == 1 and len(processor_ids) == 1
    (customer_id,) = ids
    settled(api)  # one processor customer: one customer.created webhook, settled against the API's row
    assert kinds(events_of(api, customer_id)) == [("customer.created", "api")]
    # Every creator that reached the processor used the owner's key, so the
    # Fake (like Stripe) made one customer for all of them.
    creates = [c for c in fake_calls(api, "create_customer") if c["args"]["metadata"].get("owner_id") == owner_id]
    assert creates, "the processor was never called"
    assert len({c["idempotency_key"] for c in creates}) == 1
    assert api.get("/_local/fake-stripe/state").json()["customers"] == customers_before + 1


@pytest.mark.parametrize("owner_id", [
    "6f1c2d4e-9b7a-4c1e-8f3d-2a5b6c7d8e9f", "42", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "Zoë-ñ-東京", "a b+c@d",
])
def test_owner_ids_are_lossless(api: Client, owner_id: str) -> None:
    from urllib.parse import quote

    resp = api.put(f"/v1/owners/Organization/{quote(owner_id, safe='')}/customer")
    assert resp.status_code == 201, resp.text
    assert resp.json()["owner_id"] == owner_id
    listed = api.get("/v1/customers", params={"owner_type": "Organization", "owner_id": owner_id}).json()["data"]
    assert [c["id"] for c in listed] == [resp.json()["id"]]


@pytest.mark.parametrize("owner_id", ["x" * 256, "tab\there", "nul\x01"])
def test_bad_owner_ids_are_422_and_write_nothing(api: Client, owner_id: str) -> None:
    from urllib.parse import quote

    assert_error(api.put(f"/v1/owners/User/{quote(owner_id, safe='')}/customer"), 422, "validation_error")
    listed = api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id[:255]}).json()["data"]
    assert listed == []


def test_explicit_create_always_calls_the_processor_and_409s_on_a_second(api: Client) -> None:
    owner_id = str(uuid.uuid4())
    before = len(fake_calls(api, "create_customer"))
    created = api.post("/v1/customers", {"owner_type": "User", "owner_id": owner_id, "email": "x@example.com"})
    assert created.status_code == 201, created.text
    assert len(fake_calls(api, "create_customer")) == before + 1
    again = api.post("/v1/customers", {"owner_type": "User", "owner_id": owner_id})
    body = assert_error(again, 409, "conflict")
    assert body["error"]["details"]["customer_id"] == created.json()["id"]


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("payload, field", [
    ({"email": "not-an-email"}, "email"),
    ({"currency": "USD"}, "currency"),
    ({"currency": "usdx"}, "currency"),
    ({"currency": "zzz"}, "currency"),
    ({"unknown_field": 1}, "unknown_field"),
    ({"tax_exempt": "sometimes"}, "tax_exempt"),
    ({"name": ""}, "name"),
])
def test_invalid_fields_are_422_and_write_nothing(api: Client, payload: dict[str, Any], field: str) -> None:
    owner_id = str(uuid.uuid4())
    body = assert_error(api.put(f"/v1/owners/User/{owner_id}/customer", payload), 422, "validation_error")
    assert any(field in e["field"] for e in body["error"]["details"]["errors"])
    assert api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id}).json()["data"] == []


def test_malformed_json_is_400(api: Client) -> None:
    owner_id = str(uuid.uuid4())
    resp = api.request("PUT", f"/v1/owners/User/{owner_id}/customer", data="{not json",
                       headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request")
    assert api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id}).json()["data"] == []


def test_metadata_violations_name_each_key(api: Client) -> None:
    metadata: dict[str, Any] = {"k" * 41: "v", "ok": "v" * 501, "nested": {"a": "b"}, "br[acket]": "v", "n": 5}
    body = assert_error(api.put(owner(), {"metadata": metadata}), 422, "validation_error")
    problems = body["error"]["details"]["metadata"]
    assert set(problems) == {"k" * 41, "ok", "nested", "br[acket]", "n"}
    too_many = {f"key{i}": "v" for i in range(51)}
    assert_error(api.put(owner(), {"metadata": too_many}), 422, "validation_error")


def test_processor_outage_is_502_and_writes_nothing(api: Client) -> None:
    owner_id = str(uuid.uuid4())
    assert api.post("/_local/fake-stripe/faults",
                    json_body={"operation": "create_customer", "status": 500, "times": 1}).status_code == 200
    resp = api.put(f"/v1/owners/User/{owner_id}/customer")
    assert_error(resp, 502, "processor_error")
    assert "cus_" not in resp.text
    assert api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id}).json()["data"] == []
    assert api.put(f"/v1/owners/User/{owner_id}/customer").status_code == 201


# -- updates and locking ---------------------------------------------------------------


def test_patch_merges_metadata_and_honours_if_match(api: Client) -> None:
    created = api.put(owner(), {"metadata": {"a": "1", "b": "2"}}).json()
    settled(api)  # its customer.created webhook settles without moving the row on
    cid, version = created["id"], api.get(f"/v1/customers/{created['id']}").json()["lock_version"]
    assert version == created["lock_version"]

    stale = api.patch(f"/v1/customers/{cid}", {"name": "X"}, headers={"If-Match": f'"{version + 5}"'})
    assert_error(stale, 412, "precondition_failed")
    stale_body = api.patch(f"/v1/customers/{cid}", {"name": "X", "lock_version": version + 1})
    assert_error(stale_body, 412, "precondition_failed")
    assert api.get(f"/v1/customers/{cid}").json()["lock_version"] == version

    ok = api.patch(f"/v1/customers/{cid}", {"metadata": {"a": "", "b": None, "c": "3"}, "name": "New"},
                   headers={"If-Match": f'"{version}"'})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["metadata"] == {"c": "3"}
    assert body["name"] == "New"
    # Two writes: the claim of the If-Match version before Stripe is called, then Stripe's answer.
    assert body["lock_version"] == version + 2
    assert ok.headers["ETag"] == f'"{version + 2}"'
    latest = events_of(api, cid)[0]
    assert latest["type"] == "customer.updated"
    assert sorted(latest["data"]["changed_fields"]) == ["metadata", "name"]
    assert latest["actor_type"] == "api"


def test_patch_racing_webhook_put_data_loses_neither_write(stack, api: Client) -> None:  # type: ignore[no-untyped-def]
    cid = api.put(owner()).json()["id"]
    settled(api)  # the customer.created webhook settled: the row is at version 1 before the race
    assert api.get(f"/v1/customers/{cid}").json()["lock_version"] == 1
    # Stripe's own customer.updated for each PATCH would be a third writer
    # (its data replaces the worker's): held until the race is judged.
    with webhooks_held(api):
        env = {**os.environ, **stack.runtimes["ApiFunction"].env, "PYTHONPATH": f"{ROOT / 'layers/common'}:{ROOT}"}
        worker = subprocess.Popen(  # noqa: S603 - our own worker script
            [sys.executable, str(ROOT / "tests/integration/put_data_worker.py"), cid, "20"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        names = [f"name-{i}" for i in range(20)]
        for name in names:
            resp = api.patch(f"/v1/customers/{cid}", {"name": name})
            assert resp.status_code == 200, resp.text
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        final = api.get(f"/v1/customers/{cid}").json()
        assert final["name"] == names[-1]
        assert final["data"]["balance"] == 19  # the worker's last put_data
        types = [e["type"] for e in events_of(api, cid)]
        assert types.count("customer.updated") == 20
        assert types.count("customer.data_replaced") == 20
        assert final["lock_version"] == 1 + 40


# -- tax location ---------------------------------------------------------------------


def test_tax_location_is_validated_by_the_processor_and_never_stored(api: Client) -> None:
    created = api.put(owner()).json()
    cid = created["id"]
    settled(api)
    created = api.get(f"/v1/customers/{cid}").json()
    bad = api.put(f"/v1/customers/{cid}/tax-location", {"address": {"country": "XX", "postal_code": "1"}})
    assert_error(bad, 422, "tax_location_invalid")
    bad_zip = api.put(f"/v1/customers/{cid}/tax-location", {"address": {"country": "US", "postal_code": "9410"}})
    assert_error(bad_zip, 422, "tax_location_invalid")
    assert api.get(f"/v1/customers/{cid}").json()["lock_version"] == created["lock_version"]

    ok = api.put(f"/v1/customers/{cid}/tax-location",
                 {"address": {"line1": "510 Townsend St", "city": "San Francisco", "state": "CA",
                              "postal_code": "94103", "country": "US"}})
    assert ok.status_code == 200, ok.text
    assert "Townsend" not in ok.text and "94103" not in ok.text
    # The processor's customer.updated for the new address comes back as a
    # webhook and settles against the watermark of Stripe's answer.
    settled(api)
    mine = [e for e in events_of(api, cid) if e["actor_type"] == "api"]
    assert mine[0]["type"] == "customer.tax_location_updated"
    assert mine[0]["data"] == {"changed_fields": ["city", "country", "line1", "postal_code", "state"]}
    assert [e for e in events_of(api, cid) if e["actor_type"] == "webhook"] == []
    assert api.get(f"/v1/customers/{cid}").json()["last_stripe_event_id"].startswith("api_")

    moved = api.put(f"/v1/customers/{cid}/tax-location",
                    {"address": {"line1": "510 Townsend St", "city": "San Francisco", "state": "CA",
                                 "postal_code": "94107", "country": "US"}})
    assert moved.status_code == 200
    settled(api)
    assert next(e for e in events_of(api, cid) if e["actor_type"] == "api")["data"] == {
        "changed_fields": ["postal_code"]}
    assert "94107" not in json.dumps(events_of(api, cid))


# -- payment methods ------------------------------------------------------------------


def test_payment_methods_attach_dedupe_default_and_detach(api: Client) -> None:
    cid = api.put(owner()).json()["id"]
    visa = api.post(f"/v1/customers/{cid}/payment-methods", {"payment_method_id": "pm_card_visa"})
    assert visa.status_code == 201, visa.text
    visa_id = visa.json()["id"]
    assert visa.json()["brand"] == "visa"
    # Every projection carries the Stripe id as processor_id (DESIGN.md section 2).
    assert visa.json()["processor_id"] == visa_id and visa_id.startswith("pm_")
    assert "fingerprint" not in visa.text

    same_card = api.post(f"/v1/customers/{cid}/payment-methods", {"payment_method_id": "pm_card_visa"})
    assert same_card.status_code == 200
    assert same_card.json()["id"] == visa_id
    assert same_card.json()["processor_id"] == visa_id

    master = api.post(f"/v1/customers/{cid}/payment-methods", {"payment_method_id": "pm_card_mastercard"})
    assert master.status_code == 201
    master_id = master.json()["id"]

    not_attached = api.put(f"/v1/customers/{cid}/default-payment-method", {"payment_method_id": "pm_fake_99999"})
    assert_error(not_attached, 409, "not_attached")

    default = api.put(f"/v1/customers/{cid}/default-payment-method", {"payment_method_id": visa_id})
    assert default.status_code == 200, default.text
    assert default.json()["default_payment_method_id"] == visa_id
    mirrored = [c for c in fake_calls(api, "update_customer")
                if c["args"].get("fields", {}).get("invoice_settings") == {"default_payment_method": visa_id}]
    assert mirrored

    detached = api.delete(f"/v1/customers/{cid}/payment-methods/{visa_id}")
    assert detached.status_code == 200, detached.text
    assert detached.json()["detached_at"]
    assert detached.json()["processor_id"] == visa_id
    # The processor's webhooks for all of it follow (attached, default set,
    # detached with the default cleared) and change nothing the API wrote.
    settled(api)
    customer = api.get(f"/v1/customers/{cid}?include=payment_methods").json()
    assert customer["default_payment_method_id"] is None
    listed = api.get(f"/v1/customers/{cid}/payment-methods").json()["data"]
    assert [pm["id"] for pm in listed] == [master_id]
    assert [pm["processor_id"] for pm in listed] == [master_id]
    assert {pm["id"]: pm["detached_at"] is not None for pm in customer["payment_methods"]} == {
        visa_id: True, master_id: False}
    assert {pm["processor_id"] for pm in customer["payment_methods"]} == {visa_id, master_id}
    rows = events_of(api, cid)
    mine = [e["type"] for e in rows if e["actor_type"] == "api"]
    assert mine[:2] == ["payment_method.detached", "customer.default_payment_method_set"]
    assert mine.count("payment_method.attached") == 2
    hooks = sorted(e["type"] for e in rows if e["actor_type"] == "webhook")
    # Stripe's customer.created, and its two customer.updated (default set,
    # then cleared), each re-fetch the customer in the second of the API's
    # watermark: unrecorded if the row already shows Stripe's state, else an
    # update (the creation stays the API's one); in a later second, an update.
    assert [t for t in hooks if t != "customer.updated"] == sorted(
        ["payment_method.attached", "payment_method.attached", "payment_method.detached"])
    assert hooks.count("customer.updated") <= 3
    assert [e["type"] for e in rows].count("customer.created") == 1


def test_unknown_payment_method_is_404_not_500(api: Client) -> None:
    cid = api.put(owner()).json()["id"]
    resp = api.post(f"/v1/customers/{cid}/payment-methods", {"payment_method_id": "pm_does_not_exist"})
    assert resp.status_code in (404, 422), resp.text
    assert api.get(f"/v1/customers/{cid}/payment-methods").json()["data"] == []


# -- delete, lists, includes, ledger ------------------------------------------------------


def test_soft_delete_leaves_lists_and_frees_the_owner(api: Client) -> None:
    path = owner()
    created = api.put(path, {"email": "gone@example.com"}).json()
    deleted = api.delete(f"/v1/customers/{created['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"]
    assert [c for c in fake_calls(api, "delete_customer") if c["args"]["customer_id"] == created["processor_id"]]
    owner_id = created["owner_id"]
    assert api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id}).json()["data"] == []
    with_deleted = api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id,
                                                    "include_deleted": "true"}).json()["data"]
    assert [c["id"] for c in with_deleted] == [created["id"]]
    fresh = api.put(path)
    assert fresh.status_code == 201
    assert fresh.json()["id"] != created["id"]
    assert fresh.json()["processor_id"] != created["processor_id"]
    assert events_of(api, created["id"])[0]["type"] == "customer.deleted"


def test_lists_filter_on_indexes_and_paginate(api: Client) -> None:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    made = {api.put(owner(), {"email": email, "currency": "chf"}).json()["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"email": email, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/customers", params=params).json()
        seen += [c["id"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    assert pages >= 3
    by_both = api.get("/v1/customers", params={"email": email, "currency": "chf"}).json()["data"]
    assert {c["id"] for c in by_both} == made
    assert api.get("/v1/customers", params={"email": email, "currency": "usd"}).json()["data"] == []
    one = next(iter(made))
    processor_id = api.get(f"/v1/customers/{one}").json()["processor_id"]
    assert [c["id"] for c in api.get("/v1/customers", params={"processor_id": processor_id}).json()["data"]] == [one]
    assert_error(api.get("/v1/customers", params={"cursor": "garbage!"}), 422, "validation_error")
    assert_error(api.get("/v1/customers", params={"limit": "0"}), 422, "validation_error")


def test_include_rejects_unknown_relations(api: Client) -> None:
    cid = api.put(owner()).json()["id"]
    body = api.get(f"/v1/customers/{cid}?include=payment_methods,subscriptions,invoices,charges").json()
    assert body["subscriptions"] == [] and body["invoices"] == [] and body["charges"] == []
    assert_error(api.get(f"/v1/customers/{cid}?include=secrets"), 422, "validation_error")
    assert_error(api.get("/v1/customers/cust_nope"), 404, "not_found")


def test_embedded_subscriptions_invoices_and_charges_carry_their_stripe_ids(stack: LocalStack, api: Client
                                                                           ) -> None:
    created = api.put(owner()).json()
    cid, pid = created["id"], created["processor_id"]
    sub = event("customer.subscription.created", stripe_object("subscription", id=f"sub_{uid()}", customer=pid))
    inv = event("invoice.paid", stripe_object("invoice", id=f"in_{uid()}", customer=pid, status="paid"))
    charge = event("charge.succeeded", stripe_object("charge", id=f"ch_{uid()}", customer=pid))
    for body in (sub, inv, charge):
        accepted(api, body)
    assert {e["status"] for e in settle(stack, api, sub["id"], inv["id"], charge["id"])} == {"processed"}
    resp = api.get(f"/v1/customers/{cid}?include=subscriptions,invoices,charges")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    for name, sent in (("subscriptions", sub), ("invoices", inv), ("charges", charge)):
        stripe_id = sent["data"]["object"]["id"]
        assert [(o["id"], o["processor_id"]) for o in body[name]] == [(stripe_id, stripe_id)], name
    assert "payment_methods" not in body


def test_ledger_rows_are_complete_and_newest_first(api: Client) -> None:
    cid = api.put(owner()).json()["id"]
    settled(api)  # the processor's customer.created webhook settles before the updates
    for i in range(3):
        api.patch(f"/v1/customers/{cid}", {"name": f"n{i}"})
        # Each PATCH's own customer.updated settles before the next: otherwise its
        # same-second re-fetch may meet the next PATCH already at Stripe and record
        # that newer state as Stripe's (a webhook row), which is right but not this test.
        settled(api)
    rows = events_of(api, cid)
    assert kinds(rows) == [("customer.updated", "api")] * 3 + [("customer.created", "api")]
    assert [r["inserted_at"] for r in rows] == sorted((r["inserted_at"] for r in rows), reverse=True)
    assert set(rows[0]) == {"id", "type", "subject_type", "subject_id", "actor_type", "actor_id", "data",
                            "trace_id", "idempotency_key", "caused_by_webhook_event_id", "inserted_at"}
    assert rows[-1]["idempotency_key"].startswith("customer-create-")
    page = api.get(f"/v1/customers/{cid}/events?limit=2").json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = api.get(f"/v1/customers/{cid}/events?limit=10&cursor={page['next_cursor']}").json()
    assert [r["id"] for r in page["data"] + rest["data"]] == [r["id"] for r in rows]
