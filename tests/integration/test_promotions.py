"""Coupons and promotion codes through HTTP against the local stack: the user
path, uniqueness (409s), reuse of a released code, listing by index, every
redemption-check reason in order, bad input, and webhook events (signed for
real) that arrive before the user path's create has finished."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from billing.api.idempotency import scope as request_scope
from billing.core import idempotency
from billing.promotions import codes as promotions
from devstack.dynamodb import client
from devstack.stack import LocalStack
from tests.conftest import FIXTURES, Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.webhook_helpers import accepted, event, fake, settle, settled, uid, webhooks_held

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

DAY = 86400
PROMOTION_CODE_FIELDS = {
    "id", "processor", "processor_id", "code", "active", "coupon_id", "stripe_customer_id", "max_redemptions",
    "times_redeemed", "expires_at", "metadata", "data", "lock_version", "last_stripe_event_ts",
    "last_stripe_event_id", "inserted_at", "updated_at"}
COUPON_FIELDS = {
    "id", "processor", "processor_id", "name", "percent_off", "amount_off", "currency", "duration",
    "duration_in_months", "valid", "max_redemptions", "times_redeemed", "redeem_by", "metadata", "data",
    "lock_version", "last_stripe_event_ts", "last_stripe_event_id", "inserted_at", "updated_at", "deleted_at"}


# -- helpers ----------------------------------------------------------------------------


def new_coupon(api: Client, **fields: Any) -> dict[str, Any]:
    """A new coupon (without an Idempotency-Key, each POST is one, as on
    Stripe), as it stands once its coupon.created webhook was applied too."""
    body = {"percent_off": 25, "duration": "once", "name": f"Test {uid()}", **fields}
    with webhooks_held(api):
        resp = api.post("/v1/coupons", body)
        assert resp.status_code == 201, resp.text
    return dict(api.get(f"/v1/coupons/{resp.json()['id']}").json())


def new_code(api: Client, coupon_id: str, code: str | None = None, **fields: Any) -> dict[str, Any]:
    """A new promotion code, as it stands once its promotion_code.created webhook was applied too."""
    with webhooks_held(api):
        resp = api.post("/v1/promotion-codes", {"code": code or f"SUMMER-{uid()}", "coupon": coupon_id, **fields})
        assert resp.status_code == 201, resp.text
    return dict(api.get(f"/v1/promotion-codes/{resp.json()['id']}").json())


def listed(api: Client, **params: Any) -> dict[str, Any]:
    resp = api.get("/v1/promotion-codes", params=params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def check(api: Client, code: str, body: Any = None, **params: Any) -> dict[str, Any]:
    resp = api.post(f"/v1/promotion-codes/{code}/check", body, params=params)
    assert resp.status_code == 200, resp.text
    result = dict(resp.json())
    assert set(result) == {"valid", "reason"}
    return result


def calls(api: Client, operation: str) -> list[dict[str, Any]]:
    return [c for c in api.get("/_local/fake-stripe/calls").json()["data"] if c["operation"] == operation]


def ledger_types(stack: LocalStack, subject_type: str, subject_id: str) -> list[str]:
    table = stack.runtimes["ApiFunction"].env["EVENTS_TABLE"]
    items = client(stack.ddb_endpoint).query(
        TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{subject_type}#{subject_id}"}})["Items"]
    return [i["type"]["S"] for i in items]


def guard_holder(stack: LocalStack, code: str) -> str | None:
    table = stack.runtimes["ApiFunction"].env["PROMOTION_CODES_TABLE"]
    item = client(stack.ddb_endpoint).get_item(
        TableName=table, Key={"pk": {"S": f"guard#code#{code.upper()}"}}, ConsistentRead=True).get("Item")
    return item["promotion_code_id"]["S"] if item and "promotion_code_id" in item else None


def promo_object(coupon_id: str, **changes: Any) -> dict[str, Any]:
    """A promotion code as Stripe sends it (objects.json), pointing at a coupon."""
    obj = dict(FIXTURES["promotion_code"], id=f"promo_test_{uid()}", code=f"HOOK-{uid()}", active=True,
               expires_at=None, promotion={"coupon": coupon_id, "type": "coupon"})
    obj.update(changes)
    return obj


def deliver_settled(stack: LocalStack, api: Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert accepted(api, body)["duplicate"] is False
    statuses = [e["status"] for e in settle(stack, api, *(b["id"] for b in bodies))]
    assert statuses == ["processed"] * len(bodies), statuses


def customer(api: Client) -> dict[str, Any]:
    resp = api.put(f"/v1/owners/User/{uid()}/customer", {"email": "promo@example.com"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


# -- coupons --------------------------------------------------------------------------------


def test_coupons_are_created_on_the_processor_and_projected(api: Client, stack: LocalStack) -> None:
    percent = new_coupon(api, percent_off=12.5, duration="repeating", duration_in_months=3, max_redemptions=10,
                         redeem_by=int(time.time()) + 30 * DAY, metadata={"campaign": "spring"}, name="Spring")
    assert set(percent) == COUPON_FIELDS
    assert percent["processor"] == "fake" and percent["id"] == percent["processor_id"]
    assert percent["percent_off"] == 12.5 and percent["amount_off"] is None
    assert (percent["duration"], percent["duration_in_months"]) == ("repeating", 3)
    assert percent["valid"] is True and percent["times_redeemed"] == 0 and percent["max_redemptions"] == 10
    assert percent["metadata"] == {"campaign": "spring"} and percent["data"]["name"] == "Spring"
    # The user path's row, then the processor's coupon.created webhook (which changed nothing else).
    assert ledger_types(stack, "coupon", percent["id"]) == ["coupon.created", "coupon.created"]
    assert percent["lock_version"] == 2 and percent["last_stripe_event_id"].startswith("evt_fake_")

    own_id = f"TENOFF-{uid()}"
    amount = new_coupon(api, percent_off=None, amount_off=1000, currency="eur", duration="forever", id=own_id)
    assert amount["id"] == own_id
    assert (amount["amount_off"], amount["currency"], amount["percent_off"]) == (1000, "eur", None)

    got = api.get(f"/v1/coupons/{own_id}")
    assert got.status_code == 200
    assert got.json() == amount
    assert got.headers["ETag"] == f'"{amount["lock_version"]}"'
    assert_error(api.get(f"/v1/coupons/NOPE-{uid()}"), 404, "not_found")

    # The processor saw Stripe's parameters, with an idempotency key derived from the request.
    (sent,) = [c for c in calls(api, "create_coupon") if c["args"]["params"].get("id") == own_id]
    assert sent["args"]["params"] == {"id": own_id, "amount_off": 1000, "currency": "eur", "duration": "forever",
                                      "name": amount["name"]}
    assert sent["idempotency_key"].startswith("coupon-create-")


def test_the_same_coupon_again_is_a_conflict(api: Client) -> None:
    own_id = f"DUP-{uid()}"
    first = new_coupon(api, id=own_id)
    again = assert_error(api.post("/v1/coupons", {"percent_off": 25, "duration": "once", "id": own_id}), 409,
                         "conflict")
    assert again["error"]["details"] == {"coupon_id": first["id"], "reason": "duplicate_processor_id"}
    # Another request for an id the processor has: its refusal is a conflict too.
    other = api.post("/v1/coupons", {"percent_off": 30, "id": own_id})
    assert_error(other, 409, "conflict")


@pytest.mark.parametrize("body", [
    {"percent_off": 0},
    {"percent_off": -5},
    {"percent_off": 100.5},
    {"percent_off": 12.345},
    {"percent_off": "10"},
    {"amount_off": 500},
    {"amount_off": 500, "currency": "EUR"},
    {"amount_off": 0, "currency": "usd"},
    {"percent_off": 10, "amount_off": 500, "currency": "usd"},
    {"percent_off": 10, "currency": "usd"},
    {},
    {"percent_off": 10, "duration": "repeating"},
    {"percent_off": 10, "duration": "once", "duration_in_months": 2},
    {"percent_off": 10, "duration": "sometimes"},
    {"percent_off": 10, "redeem_by": 1_000_000_000},
    {"percent_off": 10, "max_redemptions": 0},
    {"percent_off": 10, "metadata": {"a[b]": "x"}},
    {"percent_off": 10, "metadata": {"nested": {"x": "y"}}},
    {"percent_off": 10, "id": "has space"},
    {"percent_off": 10, "applies_to": {"products": ["prod_1"]}},
])
def test_bad_coupons_are_422_and_nothing_is_written(api: Client, body: dict[str, Any]) -> None:
    own_id = f"BAD-{uid()}"
    before = len(calls(api, "create_coupon"))
    resp = api.post("/v1/coupons", {"id": own_id, **body} if "id" not in body else body)
    assert_error(resp, 422, "validation_error")
    assert len(calls(api, "create_coupon")) == before
    assert_error(api.get(f"/v1/coupons/{own_id}"), 404, "not_found")


# -- promotion codes: the user path --------------------------------------------------------


def test_promotion_code_user_path(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    buyer = customer(api)
    expires_at = int(time.time()) + 7 * DAY
    code = f"Summer-{uid()}"
    created = new_code(api, coupon["id"], code, max_redemptions=5, expires_at=expires_at,
                       metadata={"campaign": "summer", "owner": "growth"}, customer_id=buyer["id"])
    assert set(created) == PROMOTION_CODE_FIELDS
    assert created["processor_id"].startswith("promo_fake_") and created["id"] == created["processor_id"]
    assert (created["code"], created["active"], created["coupon_id"]) == (code, True, coupon["id"])
    assert (created["max_redemptions"], created["times_redeemed"], created["expires_at"]) == (5, 0, expires_at)
    assert created["stripe_customer_id"] == buyer["processor_id"]
    assert created["metadata"] == {"campaign": "summer", "owner": "growth"}
    assert created["data"]["promotion"] == {"type": "coupon", "coupon": coupon["id"]}
    assert guard_holder(stack, code) == created["id"]
    assert ledger_types(stack, "promotion_code", created["id"]) == ["promotion_code.created"] * 2

    # Stripe's current API: the coupon under `promotion`; a key derived from the request.
    (sent,) = [c for c in calls(api, "create_promotion_code") if c["args"]["params"].get("code") == code]
    assert sent["args"]["params"]["promotion"] == {"type": "coupon", "coupon": coupon["id"]}
    assert sent["args"]["params"]["customer"] == buyer["processor_id"]
    assert sent["idempotency_key"].startswith("promotion-code-create-")

    got = api.get(f"/v1/promotion-codes/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    assert got.headers["ETag"] == f'"{created["lock_version"]}"'

    # Metadata merges; "" removes. If-Match guards it (412 when stale). The
    # processor's webhooks for these changes are held until the end.
    with webhooks_held(api):
        version = created["lock_version"]
        patched = api.patch(f"/v1/promotion-codes/{created['id']}", {"metadata": {"owner": "", "tier": "gold"}},
                            headers={"If-Match": f'"{version}"'})
        assert patched.status_code == 200, patched.text
        assert patched.json()["metadata"] == {"campaign": "summer", "tier": "gold"}
        assert patched.json()["lock_version"] == version + 1
        assert patched.headers["ETag"] == f'"{version + 1}"'
        before = len(calls(api, "update_promotion_code"))
        stale = api.patch(f"/v1/promotion-codes/{created['id']}", {"active": False},
                          headers={"If-Match": f'"{version}"'})
        assert assert_error(stale, 412, "precondition_failed")["error"]["details"] == {"lock_version": version + 1}
        assert_error(api.patch(f"/v1/promotion-codes/{created['id']}", {"active": False, "lock_version": version}),
                     412, "precondition_failed")
        assert len(calls(api, "update_promotion_code")) == before  # nothing was sent

        deactivated = api.patch(f"/v1/promotion-codes/{created['id']}", {"active": False, "lock_version": version + 1})
        assert deactivated.status_code == 200, deactivated.text
        assert deactivated.json()["active"] is False
        assert guard_holder(stack, code) is None
        assert ledger_types(stack, "promotion_code", created["id"]) == [
            "promotion_code.created", "promotion_code.created", "promotion_code.updated", "promotion_code.updated"]
    # Their two promotion_code.updated webhooks, applied after.
    assert ledger_types(stack, "promotion_code", created["id"]) == [
        "promotion_code.created", "promotion_code.created"] + ["promotion_code.updated"] * 4
    assert guard_holder(stack, code) is None
    assert_error(api.get("/v1/promotion-codes/promo_nope"), 404, "not_found")
    assert_error(api.patch("/v1/promotion-codes/promo_nope", {"active": False}), 404, "not_found")
    # A guard item is not a promotion code.
    assert_error(api.get(f"/v1/promotion-codes/guard%23code%23{code.upper()}"), 404, "not_found")


def test_a_duplicate_code_in_another_case_is_a_conflict(api: Client) -> None:
    coupon = new_coupon(api)
    code = f"Winter-{uid()}"
    first = new_code(api, coupon["id"], code)
    before = len(calls(api, "create_promotion_code"))
    for other in (code.lower(), code.upper()):
        resp = api.post("/v1/promotion-codes", {"code": other, "coupon": coupon["id"], "max_redemptions": 3})
        details = assert_error(resp, 409, "conflict")["error"]["details"]
        assert details == {"code": other, "promotion_code_id": first["id"], "reason": "duplicate_code"}
    # Refused from the guard alone, before the processor was asked.
    assert len(calls(api, "create_promotion_code")) == before
    assert [r["id"] for r in listed(api, code=code)["data"]] == [first["id"]]


def test_concurrent_creates_of_one_code_make_one_promotion_code(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    code = f"Rush-{uid()}"
    bodies = [{"code": code.swapcase() if i % 2 else code, "coupon": coupon["id"], "max_redemptions": i + 1}
              for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda body: api.post("/v1/promotion-codes", body), bodies))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5, [r.text for r in responses]
    (winner,) = [r.json() for r in responses if r.status_code == 201]
    for resp in responses:
        if resp.status_code == 409:
            assert resp.json()["error"]["details"]["reason"] == "duplicate_code"
    assert [r["id"] for r in listed(api, code=code)["data"]] == [winner["id"]]
    assert guard_holder(stack, code) == winner["id"]
    made = [c for c in calls(api, "create_promotion_code")
            if c["args"]["params"]["code"].upper() == code.upper() and "error" not in c]
    assert len(made) == 1  # the processor made one object; the others were refused


def test_the_same_body_twice_is_two_codes_unless_an_idempotency_key_makes_it_a_replay(api: Client) -> None:
    coupon = new_coupon(api)
    code = f"Dup-{uid()}"
    # Inactive codes claim no code guard: without an Idempotency-Key each POST is a new code, as on Stripe.
    body = {"code": code, "coupon": coupon["id"], "active": False}
    first = api.post("/v1/promotion-codes", body)
    again = api.post("/v1/promotion-codes", body)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert first.json()["id"] != again.json()["id"]
    keys = {c["idempotency_key"] for c in calls(api, "create_promotion_code") if c["args"]["params"]["code"] == code}
    assert len(keys) == 2
    assert sorted(r["id"] for r in listed(api, code=code)["data"]) == sorted([first.json()["id"],
                                                                              again.json()["id"]])

    # With an Idempotency-Key the retry is a replay: one processor object, one row, the first answer.
    keyed = dict(body, code=f"Key-{uid()}")
    header = {"Idempotency-Key": f"promo-{uid()}"}
    one = api.post("/v1/promotion-codes", keyed, headers=header)
    two = api.post("/v1/promotion-codes", keyed, headers=header)
    assert (one.status_code, two.status_code) == (201, 201) and two.json() == one.json()
    assert two.headers["Idempotent-Replayed"] == "true"
    assert len([c for c in calls(api, "create_promotion_code") if c["args"]["params"]["code"] == keyed["code"]]) == 1
    reused = api.post("/v1/promotion-codes", dict(keyed, max_redemptions=2), headers=header)
    assert_error(reused, 422, "idempotency_key_reused")

    # An active code repeated: the code guard refuses it (an active code is unique), naming its holder.
    active = new_code(api, coupon["id"])
    resp = api.post("/v1/promotion-codes", {"code": active["code"], "coupon": coupon["id"]})
    assert assert_error(resp, 409, "conflict")["error"]["details"] == {
        "code": active["code"], "promotion_code_id": active["id"], "reason": "duplicate_code"}
    settled(api)


def test_an_inactive_code_frees_its_code_for_reuse(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    code = f"Reuse-{uid()}"
    old = new_code(api, coupon["id"], code)
    resp = api.patch(f"/v1/promotion-codes/{old['id']}", {"active": False})
    assert resp.status_code == 200, resp.text

    new = new_code(api, coupon["id"], code.lower())  # the same request shape, a new processor object
    assert new["id"] != old["id"] and new["active"] is True
    assert guard_holder(stack, code) == new["id"]
    assert check(api, code) == {"valid": True, "reason": None}
    # The old one cannot come back while the new one holds the code.
    before = len(calls(api, "update_promotion_code"))
    resp = api.patch(f"/v1/promotion-codes/{old['id']}", {"active": True})
    assert assert_error(resp, 409, "conflict")["error"]["details"]["promotion_code_id"] == new["id"]
    assert len(calls(api, "update_promotion_code")) == before
    # Released again, the old one can.
    assert api.patch(f"/v1/promotion-codes/{new['id']}", {"active": False}).status_code == 200
    back = api.patch(f"/v1/promotion-codes/{old['id']}", {"active": True})
    assert back.status_code == 200, back.text
    assert guard_holder(stack, code) == old["id"]
    by_code = listed(api, code=code)["data"]
    assert sorted((r["id"], r["active"]) for r in by_code) == sorted([(old["id"], True), (new["id"], False)])


def test_a_deactivating_webhook_releases_the_code(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    code = f"Hooked-{uid()}"
    first = new_code(api, coupon["id"], code)
    obj = fake(stack).retrieve_object("promotion_code", first["id"])
    fake(stack).put_object(dict(obj, active=False))  # deactivated in the processor's dashboard
    deliver_settled(stack, api, event("promotion_code.updated", dict(obj, active=False), created=obj["created"] + 1,
                                      previous={"active": True}))
    assert api.get(f"/v1/promotion-codes/{first['id']}").json()["active"] is False
    assert guard_holder(stack, code) is None
    second = new_code(api, coupon["id"], code.upper())
    assert second["id"] != first["id"] and guard_holder(stack, code) == second["id"]


@pytest.mark.parametrize("body", [
    {"code": "HAS SPACE"},
    {"code": "under_score"},
    {"code": "ÜBER"},
    {"code": ""},
    {"code": "A" * 501},
    {"expires_at": 1_000_000_000},
    {"expires_at": "tomorrow"},
    {"max_redemptions": 0},
    {"active": "yes"},
    {"metadata": {"k" * 41: "v"}},
    {"metadata": {"n": 1}},
    {"restrictions": {"first_time_transaction": True}},
    {"coupon": ""},
    {"code": None},
])
def test_bad_promotion_codes_are_422_and_nothing_is_written(api: Client, body: dict[str, Any]) -> None:
    coupon_id = f"C-{uid()}"
    code = f"BAD-{uid()}"
    request = {"code": code, "coupon": coupon_id, **body}
    request = {k: v for k, v in request.items() if v is not None}
    before = len(calls(api, "create_promotion_code"))
    assert_error(api.post("/v1/promotion-codes", request), 422, "validation_error")
    assert len(calls(api, "create_promotion_code")) == before
    assert listed(api, code=code)["data"] == []


def test_an_unknown_coupon_is_404_and_nothing_is_written(api: Client) -> None:
    code = f"NOCPN-{uid()}"
    assert_error(api.post("/v1/promotion-codes", {"code": code, "coupon": f"NOPE-{uid()}"}), 404, "not_found")
    assert listed(api, code=code)["data"] == []


def test_a_deleted_coupon_is_404_for_new_codes(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    obj = fake(stack).retrieve_object("coupon", coupon["id"])
    deliver_settled(stack, api, event("coupon.deleted", dict(obj, deleted=True), created=obj["created"] + 1))
    before = len(calls(api, "create_promotion_code"))
    resp = api.post("/v1/promotion-codes", {"code": f"GONE-{uid()}", "coupon": coupon["id"]})
    assert_error(resp, 404, "not_found")
    assert len(calls(api, "create_promotion_code")) == before


def test_a_missing_customer_is_404(api: Client) -> None:
    coupon = new_coupon(api)
    code = f"WHO-{uid()}"
    resp = api.post("/v1/promotion-codes", {"code": code, "coupon": coupon["id"], "customer_id": "cust_nope"})
    assert_error(resp, 404, "not_found")
    assert listed(api, code=code)["data"] == []


# -- listing --------------------------------------------------------------------------------


def _redeemed(stack: LocalStack, api: Client, promotion_code_id: str, times: int) -> None:
    """The processor counted redemptions; its promotion_code.updated says so."""
    obj = dict(fake(stack).retrieve_object("promotion_code", promotion_code_id), times_redeemed=times)
    fake(stack).put_object(obj)
    deliver_settled(stack, api, event("promotion_code.updated", obj, created=obj["created"] + 1,
                                      previous={"times_redeemed": 0}))


def _pages(api: Client, **params: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor, pages = None, 0
    while True:
        page = listed(api, **params, **({"cursor": cursor} if cursor else {}))
        ids += [r["id"] for r in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None or pages > 10:
            return ids, pages


def test_listing_filters_sorts_and_pages_by_index(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    now = int(time.time())
    spec = [("E5", now + 5 * DAY, 4), ("E1", now + 1 * DAY, 0), ("E3", now + 3 * DAY, 2), ("NONE", None, 7),
            ("E2", now + 2 * DAY, 1)]
    made: dict[str, dict[str, Any]] = {}
    for label, expires_at, times in spec:
        fields = {"expires_at": expires_at} if expires_at else {}
        made[label] = new_code(api, coupon["id"], f"{label}-{uid()}", **fields)
        if times:
            _redeemed(stack, api, made[label]["id"], times)
    assert api.patch(f"/v1/promotion-codes/{made['E3']['id']}", {"active": False}).status_code == 200
    ids = {label: row["id"] for label, row in made.items()}
    by_expiry = [ids[x] for x in ("E1", "E2", "E3", "E5", "NONE")]

    assert [r["id"] for r in listed(api, coupon=coupon["id"])["data"]] == by_expiry
    assert [r["id"] for r in listed(api, coupon=coupon["id"], order="desc")["data"]] == by_expiry[::-1]
    by_redeemed = listed(api, coupon=coupon["id"], sort="times_redeemed", order="desc")["data"]
    assert [(r["id"], r["times_redeemed"]) for r in by_redeemed] == [
        (ids["NONE"], 7), (ids["E5"], 4), (ids["E3"], 2), (ids["E2"], 1), (ids["E1"], 0)]
    assert [r["id"] for r in listed(api, coupon=coupon["id"], active="false")["data"]] == [ids["E3"]]
    assert [r["id"] for r in listed(api, coupon=coupon["id"], active="true")["data"]] == \
        [ids[x] for x in ("E1", "E2", "E5", "NONE")]
    only = listed(api, code=made["E5"]["code"].lower(), coupon=coupon["id"])["data"]
    assert [r["id"] for r in only] == [ids["E5"]]
    assert listed(api, code=made["E5"]["code"], coupon=f"OTHER-{uid()}")["data"] == []

    # Pages: every row once, in order, whatever the page size.
    for limit in (1, 2, 3):
        paged, pages = _pages(api, coupon=coupon["id"], limit=limit)
        assert paged == by_expiry and pages <= len(by_expiry) // limit + 1
    paged, _ = _pages(api, coupon=coupon["id"], sort="times_redeemed", limit=2)
    assert paged == [r["id"] for r in by_redeemed][::-1]
    paged, _ = _pages(api, coupon=coupon["id"], active="true", order="desc", limit=2)
    assert paged == [ids[x] for x in ("NONE", "E5", "E2", "E1")]

    # Unfiltered: the whole-table indexes, newest expiry first.
    page = listed(api, sort="expires_at", order="desc", limit=3)
    assert len(page["data"]) == 3 and page["next_cursor"]
    assert listed(api, sort="times_redeemed", limit=1)["next_cursor"]


@pytest.mark.parametrize("params", [
    {"code": ""}, {"coupon": ""}, {"code": "no space"}, {"sort": "created"}, {"order": "sideways"},
    {"limit": 0}, {"limit": 101}, {"active": "maybe"}, {"cursor": "not-a-cursor"},
    {"cursor": "eyJhIjogMX0="},  # base64 of {"a": 1}: not one this list issued
])
def test_bad_list_parameters_are_422(api: Client, params: dict[str, Any]) -> None:
    assert_error(api.get("/v1/promotion-codes", params=params), 422, "validation_error")


def test_a_cursor_only_continues_its_own_list(api: Client) -> None:
    coupon = new_coupon(api)
    for _ in range(2):
        new_code(api, coupon["id"])
    cursor = listed(api, coupon=coupon["id"], limit=1)["next_cursor"]
    assert cursor
    for other in ({"coupon": coupon["id"], "sort": "times_redeemed"}, {"coupon": coupon["id"], "order": "desc"},
                  {"coupon": f"OTHER-{uid()}"}, {}):
        assert_error(api.get("/v1/promotion-codes", params={**other, "limit": 1, "cursor": cursor}), 422,
                     "validation_error")


# -- redemption check -----------------------------------------------------------------------


def test_check_gives_each_reason_in_order(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    buyer, other = customer(api), customer(api)
    absent = f"ABSENT-{uid()}"  # a coupon the projection never saw
    now = int(time.time())
    worst = {"expires_at": now - DAY, "max_redemptions": 1, "times_redeemed": 1, "customer": "cus_someone_else"}
    rows = {
        "inactive": promo_object(absent, active=False, **worst),
        "expired": promo_object(absent, **worst),
        "max_redemptions_reached": promo_object(absent, **dict(worst, expires_at=now + DAY)),
        "coupon_missing": promo_object(absent, **dict(worst, expires_at=now + DAY, max_redemptions=5)),
        "customer_mismatch": promo_object(coupon["id"], **dict(worst, expires_at=now + DAY, max_redemptions=5)),
        "valid": promo_object(coupon["id"], max_redemptions=5, times_redeemed=4),
        "restricted": promo_object(coupon["id"], customer=buyer["processor_id"]),
    }
    deliver_settled(stack, api, *(event("promotion_code.created", obj) for obj in rows.values()))

    for reason in ("inactive", "expired", "max_redemptions_reached", "coupon_missing", "customer_mismatch"):
        assert check(api, rows[reason]["code"]) == {"valid": False, "reason": reason}, reason
    assert check(api, rows["valid"]["code"]) == {"valid": True, "reason": None}
    assert check(api, rows["valid"]["code"].lower(), {"customer_id": buyer["id"]}) == {"valid": True, "reason": None}
    assert check(api, f"NOPE-{uid()}") == {"valid": False, "reason": "not_found"}
    assert check(api, "not%20a%20code") == {"valid": False, "reason": "not_found"}

    restricted = rows["restricted"]["code"]
    assert check(api, restricted) == {"valid": False, "reason": "customer_mismatch"}
    assert check(api, restricted, {"customer_id": other["id"]})["reason"] == "customer_mismatch"
    assert check(api, restricted, {"customer_id": buyer["id"]}) == {"valid": True, "reason": None}
    assert check(api, restricted, customer_id=buyer["id"]) == {"valid": True, "reason": None}
    assert_error(api.post(f"/v1/promotion-codes/{restricted}/check", {"customer_id": "cust_nope"}), 404, "not_found")
    assert_error(api.post(f"/v1/promotion-codes/{restricted}/check", {"customer_id": buyer["id"]},
                          params={"customer_id": other["id"]}), 422, "validation_error")
    assert_error(api.post(f"/v1/promotion-codes/{restricted}/check", {"customer": buyer["id"]}), 422,
                 "validation_error")

    # The coupon stops being valid, then is deleted: coupon_missing either way.
    obj = fake(stack).retrieve_object("coupon", coupon["id"])
    deliver_settled(stack, api, event("coupon.updated", dict(obj, valid=False), created=obj["created"] + 1))
    assert check(api, rows["valid"]["code"]) == {"valid": False, "reason": "coupon_missing"}
    deliver_settled(stack, api, event("coupon.deleted", dict(obj, valid=True), created=obj["created"] + 2))
    assert api.get(f"/v1/coupons/{coupon['id']}").json()["deleted_at"]
    assert check(api, rows["valid"]["code"]) == {"valid": False, "reason": "coupon_missing"}


def test_check_follows_the_active_code_not_a_released_one(api: Client) -> None:
    coupon = new_coupon(api)
    code = f"Twice-{uid()}"
    old = new_code(api, coupon["id"], code)
    assert api.patch(f"/v1/promotion-codes/{old['id']}", {"active": False}).status_code == 200
    assert check(api, code) == {"valid": False, "reason": "inactive"}
    new_code(api, coupon["id"], code, max_redemptions=1)
    assert check(api, code) == {"valid": True, "reason": None}


# -- the webhook path and the user path converge ----------------------------------------------


def _one_row(api: Client, code: str) -> dict[str, Any]:
    (row,) = listed(api, code=code)["data"]
    return dict(row)


def test_a_created_webhook_before_a_retried_create_leaves_one_row(api: Client, stack: LocalStack) -> None:
    """The processor made the code but its answer was lost (502); its
    promotion_code.created arrives; the caller retries the same request
    (with the same Idempotency-Key, so the processor is asked the same)."""
    coupon = new_coupon(api)
    code = f"Race-{uid()}"
    body = {"code": code, "coupon": coupon["id"], "metadata": {"campaign": "race"}}
    header = {"Idempotency-Key": f"race-{uid()}"}
    fake(stack).add_fault("create_promotion_code", 500, after=True)
    with webhooks_held(api):
        assert_error(api.post("/v1/promotion-codes", body, headers=header), 502, "processor_error")
        assert listed(api, code=code)["data"] == []

    # The processor made it: its promotion_code.created webhook recorded the row.
    (sent,) = [c for c in calls(api, "create_promotion_code") if c["args"]["params"]["code"] == code]
    obj = fake(stack).retrieve_object("promotion_code", _one_row(api, code)["id"])
    (created,) = [e for e in api.get("/_local/fake-stripe/events", params={
        "type": "promotion_code.created", "limit": "1000"}).json()["data"] if e["data"]["object"]["id"] == obj["id"]]
    hooked = _one_row(api, code)
    assert (hooked["id"], hooked["last_stripe_event_id"]) == (obj["id"], created["id"])
    assert guard_holder(stack, code) == obj["id"]  # the webhook path claimed it for this processor id

    retried = api.post("/v1/promotion-codes", body, headers=header)
    assert retried.status_code == 201, retried.text
    merged = retried.json()
    assert merged["id"] == obj["id"] and merged["lock_version"] == hooked["lock_version"] + 1
    assert (merged["code"], merged["active"], merged["coupon_id"]) == (code, True, coupon["id"])
    assert merged["metadata"] == {"campaign": "race"} and merged["last_stripe_event_id"] == created["id"]
    assert _one_row(api, code) == merged
    assert guard_holder(stack, code) == obj["id"]
    assert ledger_types(stack, "promotion_code", obj["id"]) == [
        "promotion_code.created", "promotion_code.create_confirmed"]
    assert check(api, code) == {"valid": True, "reason": None}
    assert [c["idempotency_key"] for c in calls(api, "create_promotion_code")
            if c["args"]["params"]["code"] == code] == [sent["idempotency_key"]] * 2  # asked the same, twice
    # From now on it is a user-path row like any other: its retry is a replay, a new request a duplicate.
    assert api.post("/v1/promotion-codes", body, headers=header).json() == merged
    resp = api.post("/v1/promotion-codes", body)
    assert assert_error(resp, 409, "conflict")["error"]["details"]["reason"] == "duplicate_code"
    resp = api.post("/v1/promotion-codes", dict(body, code=code.swapcase()))
    assert assert_error(resp, 409, "conflict")["error"]["details"]["reason"] == "duplicate_code"


def test_a_created_webhook_before_the_create_finished_leaves_one_row(api: Client, stack: LocalStack) -> None:
    """The user path's processor call is made directly on the Fake (with the
    key and parameters the route derives), its webhook is applied, then the
    route runs: the processor answers with the same object."""
    coupon = new_coupon(api)
    code = f"Early-{uid()}"
    request = promotions.NewPromotionCode(code=code, coupon=coupon["id"], max_redemptions=3)
    params = promotions.processor_params(request, None)
    # The key the route derives from the request's Idempotency-Key (billing.core.idempotency).
    header = f"early-{uid()}"
    with idempotency.request(header, request_scope("anonymous", "POST", "/v1/promotion-codes")):
        key = promotions.create_idempotency_key(0)
    obj = fake(stack).create_promotion_code(idempotency_key=key, params=params)
    deliver_settled(stack, api, event("promotion_code.created", obj, created=obj["created"]))

    resp = api.post("/v1/promotion-codes", {"code": code, "coupon": coupon["id"], "max_redemptions": 3},
                    headers={"Idempotency-Key": header})
    assert resp.status_code == 201, resp.text
    assert resp.json()["id"] == obj["id"] and resp.json()["max_redemptions"] == 3
    assert _one_row(api, code)["id"] == obj["id"]
    assert guard_holder(stack, code) == obj["id"]

    # A later update still applies over the merged row (watermark rules).
    updated = dict(obj, active=False)
    fake(stack).put_object(updated)
    deliver_settled(stack, api, event("promotion_code.updated", updated, created=obj["created"] + 1))
    assert _one_row(api, code)["active"] is False
    assert guard_holder(stack, code) is None


def test_a_created_webhook_after_the_create_changes_nothing_twice(api: Client, stack: LocalStack) -> None:
    coupon = new_coupon(api)
    made = new_code(api, coupon["id"])
    obj = fake(stack).retrieve_object("promotion_code", made["id"])
    created = event("promotion_code.created", obj, created=obj["created"])
    deliver_settled(stack, api, created)
    row = _one_row(api, made["code"])
    assert row["id"] == made["id"] and row["last_stripe_event_id"] == created["id"]
    assert (row["code"], row["active"], row["metadata"]) == (made["code"], True, made["metadata"])
    assert guard_holder(stack, made["code"]) == made["id"]


def test_a_coupon_created_webhook_before_a_retried_create_leaves_one_row(api: Client, stack: LocalStack) -> None:
    own_id = f"RACE-{uid()}"
    body = {"id": own_id, "percent_off": 15, "duration": "forever", "metadata": {"campaign": "race"}}
    header = {"Idempotency-Key": f"race-{uid()}"}
    fake(stack).add_fault("create_coupon", 500, after=True)
    with webhooks_held(api):
        assert_error(api.post("/v1/coupons", body, headers=header), 502, "processor_error")
        assert_error(api.get(f"/v1/coupons/{own_id}"), 404, "not_found")

    # The processor made it: its coupon.created webhook recorded the row.
    (created,) = [e for e in api.get("/_local/fake-stripe/events", params={
        "type": "coupon.created", "limit": "1000"}).json()["data"] if e["data"]["object"]["id"] == own_id]
    hooked = api.get(f"/v1/coupons/{own_id}").json()
    assert hooked["last_stripe_event_id"] == created["id"]

    retried = api.post("/v1/coupons", body, headers=header)
    assert retried.status_code == 201, retried.text
    merged = retried.json()
    assert merged["id"] == own_id and merged["lock_version"] == hooked["lock_version"] + 1
    assert (merged["percent_off"], merged["duration"], merged["metadata"]) == (15, "forever", {"campaign": "race"})
    assert merged["last_stripe_event_id"] == created["id"]
    assert ledger_types(stack, "coupon", own_id) == ["coupon.created", "coupon.create_confirmed"]
    # Without the key it is a new request for an id the processor has: a conflict.
    assert_error(api.post("/v1/coupons", body), 409, "conflict")


def test_the_openapi_document_describes_the_promotion_routes(api: Client) -> None:
    doc = api.get("/v1/openapi.json").json()
    paths = doc["paths"]
    for path, method, statuses in (
        ("/v1/coupons", "post", {"201", "409", "422"}),
        ("/v1/coupons/{coupon_id}", "get", {"200", "404"}),
        ("/v1/promotion-codes", "post", {"201", "404", "409", "422"}),
        ("/v1/promotion-codes", "get", {"200", "422"}),
        ("/v1/promotion-codes/{promotion_code}", "get", {"200", "404"}),
        ("/v1/promotion-codes/{promotion_code}", "patch", {"200", "409", "412", "422"}),
        ("/v1/promotion-codes/{promotion_code}/check", "post", {"200", "404", "422"}),
    ):
        assert statuses <= set(paths[path][method]["responses"]), (path, method)
    check_schema = paths["/v1/promotion-codes/{promotion_code}/check"]["post"]["responses"]["200"]
    assert check_schema["content"]["application/json"]["schema"]["$ref"].endswith("/PromotionCodeCheck")


def test_check_sample_event(stack: LocalStack, api: Client) -> None:
    """events/api/check_promotion_code.json, as `sam local invoke -e` feeds it."""
    sample = json.loads((ROOT / "events" / "api" / "check_promotion_code.json").read_text())
    result = stack.invoke("ApiFunction", sample)
    assert result["statusCode"] == 200, result["body"]
    # No test makes SUMMER25 itself (codes carry a unique suffix).
    assert json.loads(result["body"]) == {"valid": False, "reason": "not_found"}
    # With a code this test made, the answer is exact.
    coupon = new_coupon(api)
    made = new_code(api, coupon["id"])
    sample["pathParameters"] = {"promotion_code": made["code"]}
    sample["path"] = f"/v1/promotion-codes/{made['code']}/check"
    result = stack.invoke("ApiFunction", sample)
    assert json.loads(result["body"]) == {"valid": True, "reason": None}
