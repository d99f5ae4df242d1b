"""API writes keep the promise under retries and races (issue 19): an
Idempotency-Key belongs to the caller's principal, not its STS session;
answers that ask for a retry are never replayed; If-Match holds to the end
of a PATCH; a tax location set A, B, A ends at A; the call that created a
customer answers 201."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.dynamodb import client
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.test_subscriptions import card, ok, owner, price_id
from tests.integration.webhook_helpers import fake, settled

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


def role_session(role: str, session: str) -> dict[str, Any]:
    """requestContext.identity as API Gateway fills it for a SigV4 caller
    signing with an assumed role's session credentials."""
    role_id = "AROA" + uuid.uuid5(uuid.NAMESPACE_DNS, role).hex[:17].upper()
    return {"accountId": ACCOUNT, "caller": f"{role_id}:{session}", "user": f"{role_id}:{session}",
            "userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accessKey": "ASIA" + uuid.uuid4().hex[:16].upper(), "sourceIp": "10.0.0.1"}


def iam_user(name: str) -> dict[str, Any]:
    user_id = "AIDA" + uuid.uuid5(uuid.NAMESPACE_DNS, name).hex[:17].upper()
    return {"accountId": ACCOUNT, "caller": user_id, "user": user_id,
            "userArn": f"arn:aws:iam::{ACCOUNT}:user/{name}", "accessKey": "AKIA" + uuid.uuid4().hex[:16].upper(),
            "sourceIp": "10.0.0.1"}


def api_event(method: str, path: str, resource: str, params: dict[str, str], body: Any, *,
              identity: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The sample API event of events/ turned into another signed request."""
    event = json.loads((ROOT / "events" / "api" / "fetch_or_create_customer.json").read_text())
    all_headers = {**event["headers"], **headers}
    event.update(httpMethod=method, path=path, resource=resource, pathParameters=params,
                 body=json.dumps(body), headers=all_headers,
                 multiValueHeaders={k: [v] for k, v in all_headers.items()})
    context = event["requestContext"]
    context.update(httpMethod=method, resourcePath=resource, path=f"/local{path}",
                   requestId=str(uuid.uuid4()))
    context["identity"] = {**context["identity"], **copy.deepcopy(identity)}
    return dict(event)


def create_subscription(stack: LocalStack, customer_id: str, body: dict[str, Any], key: str,
                        identity: dict[str, Any]) -> dict[str, Any]:
    event = api_event("POST", f"/v1/customers/{customer_id}/subscriptions",
                      "/v1/customers/{customer_id}/subscriptions", {"customer_id": customer_id}, body,
                      identity=identity, headers={"Idempotency-Key": key})
    return dict(stack.invoke("ApiFunction", event))


def subscription_creates(stack: LocalStack) -> int:
    return len([c for c in fake(stack).calls if c["operation"] == "create_subscription"])


# -- 9. Idempotency-Key: the caller's principal, never a retry answer ---------------------


def test_a_retry_from_another_session_of_the_same_role_replays(stack: LocalStack, api: Client) -> None:
    _, customer = owner(api)
    body = {"items": [{"price": price_id(api, "starter_monthly")}], "default_payment_method": card(api, customer["id"]),
            "payment_behavior": "allow_incomplete"}
    key = f"sub-{uuid.uuid4()}"
    before = subscription_creates(stack)

    # Two ECS tasks of one service: one role, a session name each.
    first = create_subscription(stack, customer["id"], body, key, role_session("billing-client", "task-1a2b"))
    again = create_subscription(stack, customer["id"], body, key, role_session("billing-client", "task-9f8e"))
    assert first["statusCode"] == 201, first["body"]
    assert again["statusCode"] == 201, again["body"]
    assert json.loads(again["body"]) == json.loads(first["body"])
    assert again["multiValueHeaders"].get("Idempotent-Replayed") == ["true"]
    assert subscription_creates(stack) == before + 1
    subs = ok(api.get("/v1/subscriptions", params={"customer_id": customer["id"]}))["data"]
    assert len(subs) == 1

    # Another principal's equal key is its own request: a second subscription.
    other = create_subscription(stack, customer["id"], body, key, iam_user("ops-script"))
    assert other["statusCode"] == 201, other["body"]
    assert "Idempotent-Replayed" not in other["multiValueHeaders"]
    assert json.loads(other["body"])["id"] != json.loads(first["body"])["id"]
    assert subscription_creates(stack) == before + 2
    settled(api)


def test_a_5xx_answer_under_a_key_is_not_replayed(stack: LocalStack, api: Client) -> None:
    _, customer = owner(api)
    body = {"items": [{"price": price_id(api, "starter_monthly")}], "default_payment_method": card(api, customer["id"]),
            "payment_behavior": "allow_incomplete"}
    key = f"sub-{uuid.uuid4()}"
    # Stripe made the subscription but its answer was lost: 502 to the caller.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "create_subscription", "status": 500, "after": True}))
    failed = create_subscription(stack, customer["id"], body, key, role_session("billing-client", "task-1"))
    assert failed["statusCode"] == 502, failed["body"]
    retried = create_subscription(stack, customer["id"], body, key, role_session("billing-client", "task-2"))
    assert retried["statusCode"] == 201, retried["body"]
    assert "Idempotent-Replayed" not in retried["multiValueHeaders"]
    # The retry made the same Stripe call (same key): one subscription at Stripe and here.
    subs = ok(api.get("/v1/subscriptions", params={"customer_id": customer["id"]}))["data"]
    assert [s["id"] for s in subs] == [json.loads(retried["body"])["id"]]
    assert len(fake(stack).list_subscriptions(customer_id=customer["processor_id"])) == 1
    settled(api)


# -- 11. tax location: each request is its own Stripe call ---------------------------


def test_a_tax_location_set_a_b_a_ends_at_a(stack: LocalStack, api: Client) -> None:
    customer = ok(api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "tax@example.com"}), 201)
    cid = customer["id"]
    a = {"line1": "510 Townsend St", "city": "San Francisco", "state": "CA", "postal_code": "94103",
         "country": "US"}
    b = {**a, "postal_code": "94107"}
    digests = []
    for address in (a, b, a):
        ok(api.put(f"/v1/customers/{cid}/tax-location", {"address": address}))
        settled(api)
        at_stripe = fake(stack).retrieve_customer(customer["processor_id"])["address"]
        assert at_stripe["postal_code"] == address["postal_code"]
        digests.append(stack_row_digest(stack, cid))
    # The row (which keeps only a digest of the address) ends where Stripe does: at A.
    assert digests[2] == digests[0] != digests[1]
    mine = [e for e in ok(api.get(f"/v1/customers/{cid}/events"))["data"]
            if e["type"] == "customer.tax_location_updated"]
    assert [e["data"]["changed_fields"] for e in mine][:2] == [["postal_code"], ["postal_code"]]


def stack_row_digest(stack: LocalStack, customer_id: str) -> dict[str, str]:
    """The row's tax location digest (all it keeps of the address), read from the stack's table."""
    item = client(stack.ddb_endpoint).get_item(
        TableName=stack.runtimes["ApiFunction"].env["CUSTOMERS_TABLE"], Key={"pk": {"S": customer_id}},
        ConsistentRead=True)["Item"]
    return dict(json.loads(item["tax_location_digest"]["S"]))


# -- 10. PATCH If-Match holds to the end ---------------------------------------------------


def api_session(api: Client) -> Client:
    """A client of its own (requests' sessions are not shared across threads)."""
    return Client(api.base_url)


def stripe_updates(stack: LocalStack, processor_id: str) -> int:
    return len([c for c in fake(stack).calls if c["operation"] == "update_customer"
                and c["args"].get("customer_id") == processor_id])


def concurrently(n: int, call: Any) -> list[Any]:
    """`call(i)` for i in range(n), released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def warm_api_workers(stack: LocalStack, api: Client, customer_id: str, n: int = 4) -> None:
    """Until `n` API workers serve at once: the local runtime starts a worker
    only when a request finds every one busy, and a new one takes seconds to
    start, so until then requests queue behind the warm one. Polled with
    rounds of `n` PATCHes whose Stripe calls each answer 1 s late."""
    assert stack.settings.concurrency >= n
    deadline = time.monotonic() + 120
    while True:
        ok(api.post("/_local/fake-stripe/faults", {"operation": "update_customer", "delay": 1.0, "times": n}))
        started = time.monotonic()
        answers = concurrently(n, lambda i: api_session(api).patch(f"/v1/customers/{customer_id}",
                                                                   {"name": f"warm-{uuid.uuid4().hex[:6]}"}))
        took = time.monotonic() - started
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        if took < 1.9:  # each call's second overlapped: n workers at once
            break
        assert time.monotonic() < deadline, f"the API never served {n} requests at once"
    settled(api)


def test_concurrent_patches_on_one_etag_one_wins_before_stripe(stack: LocalStack, api: Client) -> None:
    customer = ok(api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "race@example.com"}), 201)
    warm_api_workers(stack, api, customer["id"])
    got = api.get(f"/v1/customers/{customer['id']}")
    etag, before = got.headers["ETag"], stripe_updates(stack, customer["processor_id"])
    ledger_before = len(ok(api.get(f"/v1/customers/{customer['id']}/events", params={"limit": "100"}))["data"])
    # Stripe answers slowly, so under a check made only before the Stripe
    # call every racer would pass it before any of them writes.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "update_customer", "delay": 1.0, "times": 4}))
    answers = concurrently(4, lambda i: api_session(api).patch(f"/v1/customers/{customer['id']}",
                                                               {"name": f"racer-{i}"}, headers={"If-Match": etag}))
    assert sorted(a.status_code for a in answers) == [200, 412, 412, 412], [a.text for a in answers]
    assert stripe_updates(stack, customer["processor_id"]) == before + 1
    assert api.delete("/_local/fake-stripe/faults").status_code == 200  # the slow answers no 412 met
    (winner,) = [a for a in answers if a.status_code == 200]
    settled(api)
    final = api.get(f"/v1/customers/{customer['id']}")
    assert final.json()["name"] == winner.json()["name"] and final.headers["ETag"] == winner.headers["ETag"]
    assert fake(stack).retrieve_customer(customer["processor_id"])["name"] == winner.json()["name"]
    rows = ok(api.get(f"/v1/customers/{customer['id']}/events", params={"limit": "100"}))["data"]
    assert [(e["type"], e["actor_type"]) for e in rows[:len(rows) - ledger_before]] == [("customer.updated", "api")]


def test_a_patch_that_dies_after_its_claim_leaves_the_customer_usable(stack: LocalStack, api: Client) -> None:
    customer = ok(api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "crash@example.com"}), 201)
    settled(api)
    etag = api.get(f"/v1/customers/{customer['id']}").headers["ETag"]
    # Stripe applies the change, and the API's process dies before it hears the answer.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "update_customer", "crash": True}))
    died = api.patch(f"/v1/customers/{customer['id']}", {"name": "lost answer"}, headers={"If-Match": etag})
    assert died.status_code >= 500
    settled(api)  # Stripe's customer.updated settles what Stripe holds
    current = api.get(f"/v1/customers/{customer['id']}")
    assert current.json()["name"] == "lost answer" and current.headers["ETag"] != etag
    # The claim wrote no ledger row of its own: the only customer.updated is Stripe's.
    updates = [e for e in ok(api.get(f"/v1/customers/{customer['id']}/events"))["data"]
               if e["type"] == "customer.updated"]
    assert [e["actor_type"] for e in updates] == ["webhook"]
    assert_error(api.patch(f"/v1/customers/{customer['id']}", {"name": "stale"}, headers={"If-Match": etag}),
                 412, "precondition_failed")
    fresh = api.patch(f"/v1/customers/{customer['id']}", {"name": "next"},
                      headers={"If-Match": current.headers["ETag"]})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["name"] == "next"


# -- 13. the call that created a customer answers 201 -----------------------------------------


def until(condition: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def creates_for(stack: LocalStack, owner_id: str) -> list[dict[str, Any]]:
    return [c for c in fake(stack).calls if c["operation"] == "create_customer"
            and c["args"]["metadata"].get("owner_id") == owner_id]


@pytest.mark.parametrize("callers", [1, 2])
def test_the_call_that_created_a_customer_answers_201_when_its_webhook_landed_first(
        stack: LocalStack, api: Client, callers: int) -> None:
    owner_id = str(uuid.uuid4())
    path = f"/v1/owners/User/{owner_id}/customer"
    # Stripe makes the customer at once; its answer to the API is held (until
    # the faults are cleared) while Stripe's customer.created is delivered.
    ok(api.post("/_local/fake-stripe/faults", {"operation": "create_customer", "delay": 30, "after": True,
                                                "times": callers}))
    assert api.post("/_local/fake-stripe/delivery", {"hold": True}).status_code == 200
    try:
        with ThreadPoolExecutor(max_workers=callers) as pool:
            puts = [pool.submit(api_session(api).put, path, {"email": "first@example.com"})
                    for _ in range(callers)]
            until(lambda: len(creates_for(stack, owner_id)) == callers, "the API's calls to Stripe")
            assert api.post("/_local/fake-stripe/delivery", {"hold": False}).status_code == 200
            settled(api)  # customer.created delivered and applied: the webhook made the row
            until(lambda: ok(api.get("/v1/customers", params={"owner_type": "User", "owner_id": owner_id}))["data"],
                  "the webhook's row")
            assert api.delete("/_local/fake-stripe/faults").status_code == 200  # Stripe's answers arrive
            answers = [p.result(timeout=60) for p in puts]
    finally:
        api.post("/_local/fake-stripe/delivery", {"hold": False})
        api.delete("/_local/fake-stripe/faults")
    assert sorted(a.status_code for a in answers) == [200] * (callers - 1) + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    settled(api)
    assert api.put(path).status_code == 200  # an existing owner's fetch-or-create
    rows = ok(api.get(f"/v1/customers/{answers[0].json()['id']}/events", params={"limit": "100"}))["data"]
    assert [e["type"] for e in rows].count("customer.created") == 1
