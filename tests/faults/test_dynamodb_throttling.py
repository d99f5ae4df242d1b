"""DynamoDB throttling (and transaction conflicts, and refused conditions) injected on the write path
(moto's fault injector, through POST /_local/dynamodb/faults, scoped to one
table).

What happens, by layer:
- botocore retries a throttled request itself (standard mode, backoff):
  PynamoDB allows 1 + 3 attempts (billing.data.tables, PynamoDB's default
  max_retry_attempts), the webhook's boto3 client botocore's default for
  DynamoDB, 4; within those the caller sees nothing;
- past them the API answers 503 `unavailable` with Retry-After (mapped once,
  in billing.api.errors; nothing internal in the body), and the same request
  sent again succeeds exactly once: nothing was written by the throttled one;
- the webhook ack answers the same 503, and Stripe's redelivery is stored once;
- on the streams, a throttled write fails the invocation (or the record),
  the event source retries, and nothing is lost or billed twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import Delivered, check_ledger, check_usage, check_webhooks, pending_faults, quiet
from tests.integration.usage_helpers import (
    REPORTER,
    REPORTER_STREAM,
    delivery_paused,
    fake,
    new_customer,
    put_usage,
    uid,
    usage_body,
)
from tests.integration.webhook_helpers import deliver, event, settled, webhooks_held

# Attempts PynamoDB makes before a throttle reaches the code: 1 + max_retry_attempts (3).
PYNAMODB_ATTEMPTS = 4
# botocore's standard retry mode for DynamoDB: 4 attempts (the webhook function's plain boto3 client).
BOTO3_ATTEMPTS = 4
INTERNALS = ("Throttling", "ProvisionedThroughput", "RequestLimit", "DynamoDB", "billing-local", "Traceback")


def table(stack: LocalStack, function: str, variable: str) -> str:
    return stack.runtimes[function].env[variable]


def throttle(api: Client, operation: str, times: int, table_name: str, error: str = "ThrottlingException") -> None:
    resp = api.post("/_local/dynamodb/faults", {"operation": operation, "error": error, "times": times,
                                                "table": table_name})
    assert resp.status_code == 200, resp.text


def injected(api: Client, operation: str) -> int:
    return int(api.get("/_local/dynamodb/faults").json()["injected"].get(operation, 0))


def assert_unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == "1"
    body = resp.json()
    assert body["error"]["type"] == "unavailable"
    assert not any(word in resp.text for word in INTERNALS), resp.text


def test_the_fault_route_refuses_a_fault_dynamodb_never_answers(api: Client) -> None:
    resp = api.post("/_local/dynamodb/faults", {"operation": "PutItem", "error": "NoSuchThing"})
    assert resp.status_code == 400 and "error must be one of" in resp.text
    assert "PutItem" not in api.get("/_local/dynamodb/faults").json()["pending"]


# -- the API -------------------------------------------------------------------------------


def test_a_usage_put_throttled_within_the_sdk_retries_is_accepted_once(stack: LocalStack, api: Client) -> None:
    """The accept is one conditional PutItem (DESIGN.md section 4)."""
    quiet(stack, api)
    customer = new_customer(api)
    before = injected(api, "PutItem")
    throttle(api, "PutItem", PYNAMODB_ATTEMPTS - 1, table(stack, "ApiFunction", "METER_EVENTS_TABLE"))
    identifier = uid("absorbed")
    put_usage(api, identifier, usage_body(customer, 2))
    assert injected(api, "PutItem") == before + PYNAMODB_ATTEMPTS - 1
    check_usage(stack, api, {identifier: 2})


@pytest.mark.parametrize("error", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_a_usage_put_throttled_past_the_retries_is_503_and_its_retry_is_accepted_once(
        stack: LocalStack, api: Client, error: str) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    identifier = uid("throttled")
    throttle(api, "PutItem", PYNAMODB_ATTEMPTS, table(stack, "ApiFunction", "METER_EVENTS_TABLE"), error)
    assert_unavailable(api.put(f"/v1/usage/{identifier}", usage_body(customer, 5)))
    assert api.get(f"/v1/usage/{identifier}").status_code == 404  # nothing written

    put_usage(api, identifier, usage_body(customer, 5))  # the client's retry: 202, accepted now
    put_usage(api, identifier, usage_body(customer, 5), status=200)
    check_usage(stack, api, {identifier: 5})
    assert pending_faults(stack, api) == {}


def test_a_usage_put_makes_no_transaction_for_a_concurrent_one_to_cancel(stack: LocalStack, api: Client) -> None:
    """The accept used to be a TransactWriteItems (the row and its ledger row),
    which another transaction on the same identifier could cancel. It is one
    conditional PutItem now: DynamoDB serialises the puts of one key, and a
    conflict scripted on the table's transactions is never met."""
    quiet(stack, api)
    customer = new_customer(api)
    meter_table = table(stack, "ApiFunction", "METER_EVENTS_TABLE")
    before = injected(api, "TransactWriteItems")
    throttle(api, "TransactWriteItems", 2, meter_table, "TransactionConflict")
    identifier = uid("conflict")
    put_usage(api, identifier, usage_body(customer, 4))
    put_usage(api, identifier, usage_body(customer, 4), status=200)
    assert injected(api, "TransactWriteItems") == before
    assert pending_faults(stack, api) == {"dynamodb:TransactWriteItems": 2}
    api.delete("/_local/dynamodb/faults")
    check_usage(stack, api, {identifier: 4})


def test_a_usage_retry_refused_by_a_concurrent_change_is_409_and_can_be_sent_again(stack: LocalStack,
                                                                                  api: Client) -> None:
    """The retry is one UpdateItem conditional on the row still failed at the
    version read: a write in between refuses it, and the caller is told."""
    quiet(stack, api)
    customer = new_customer(api)
    identifier = uid("retry")
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "code": "parameter_invalid_integer"}).status_code == 200
    put_usage(api, identifier, usage_body(customer, 8))
    check_usage(stack, api, {identifier: 8}, failed={identifier})

    throttle(api, "UpdateItem", 1, table(stack, "ApiFunction", "METER_EVENTS_TABLE"),
             "ConditionalCheckFailedException")
    resp = api.post(f"/v1/usage/{identifier}/retry")
    assert resp.status_code == 409 and resp.json()["error"]["type"] == "conflict", resp.text
    assert api.post(f"/v1/usage/{identifier}/retry").status_code == 202
    check_usage(stack, api, {identifier: 8})
    settled(api)  # the customer's own customer.created webhook, settled
    # Usage writes no ledger row; the customer's: the API's (Stripe's webhook settles against it).
    check_ledger(api, customer["id"], {"usage.accepted": 0, "usage.retry_requested": 0, "customer.created": 1})


def test_a_customer_create_throttled_past_the_retries_is_503_and_its_retry_creates_one(stack: LocalStack,
                                                                                        api: Client) -> None:
    quiet(stack, api)
    owner_id = uid("owner")
    customers = fake(stack).snapshot()["customers"]
    # Stripe's customer.created webhook waits (its write would take the throttles meant for the API's).
    with webhooks_held(api):
        throttle(api, "TransactWriteItems", PYNAMODB_ATTEMPTS, table(stack, "ApiFunction", "CUSTOMERS_TABLE"))
        assert_unavailable(api.put(f"/v1/owners/Team/{owner_id}/customer", {"email": "t@example.com"}))
        listed = api.get("/v1/customers", params={"owner_type": "Team", "owner_id": owner_id})
        assert listed.json()["data"] == []

        created = api.put(f"/v1/owners/Team/{owner_id}/customer", {"email": "t@example.com"})
        assert created.status_code == 201, created.text
    # Stripe was called twice with one idempotency key: one Stripe customer.
    assert fake(stack).snapshot()["customers"] == customers + 1
    calls = [c for c in fake(stack).calls
             if c["operation"] == "create_customer" and c["args"]["metadata"].get("owner_id") == owner_id]
    assert len(calls) == 2 and len({c["idempotency_key"] for c in calls}) == 1
    # The API's row; the one customer.created webhook of the one Stripe customer settles against it.
    check_ledger(api, created.json()["id"], {"customer.created": 1, "customer.updated": 0})


def test_a_customer_patch_throttled_past_the_retries_is_503_and_its_retry_changes_it_once(
        stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    created = new_customer(api)
    settled(api)  # its customer.created webhook is settled before the throttles
    customer = api.get(f"/v1/customers/{created['id']}").json()
    patch = {"name": "Throttled Ltd", "lock_version": customer["lock_version"]}
    # The PATCH goes to Stripe first, whose customer.updated webhook waits
    # (its write would take the throttles meant for the API's).
    with webhooks_held(api):
        throttle(api, "TransactWriteItems", PYNAMODB_ATTEMPTS, table(stack, "ApiFunction", "CUSTOMERS_TABLE"),
                 "RequestLimitExceeded")
        assert_unavailable(api.patch(f"/v1/customers/{customer['id']}", patch))
        assert api.get(f"/v1/customers/{customer['id']}").json()["lock_version"] == customer["lock_version"]

        again = api.patch(f"/v1/customers/{customer['id']}", patch)
        assert again.status_code == 200, again.text
        # The version claimed before Stripe was given back with the 503; the retry claims it again.
        assert (again.json()["name"], again.json()["lock_version"]) == ("Throttled Ltd",
                                                                        customer["lock_version"] + 2)
    settled(api)  # Stripe's webhook for the change settles to the same state, writing nothing more
    check_ledger(api, customer["id"], {"customer.created": 1, "customer.updated": 1})


# -- the meter reporter ----------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 6])
def test_a_throttled_outcome_write_is_retried_by_the_stream_and_bills_once(stack: LocalStack, api: Client,
                                                                          rows: int) -> None:
    """Each row's outcome is its own conditional UpdateItem (no transaction:
    it would cost twice the write units); throttled past its retries, it
    fails the invocation after Stripe took the events, and the stream
    delivers again."""
    quiet(stack, api)
    assert stack.streams is not None
    poller = stack.streams.poller(REPORTER_STREAM)
    errors = poller.stats().function_errors
    customer = new_customer(api)
    accepted = {uid("outcome"): n for n in range(rows)}
    with delivery_paused(stack):
        for identifier, value in accepted.items():
            put_usage(api, identifier, usage_body(customer, value))
        # Every attempt of every row's write: whichever row the reporter writes first fails the invocation.
        throttle(api, "UpdateItem", PYNAMODB_ATTEMPTS * rows, table(stack, REPORTER, "METER_EVENTS_TABLE"))

    check_usage(stack, api, accepted)
    assert pending_faults(stack, api) == {}
    assert poller.stats().function_errors > errors
    # Stripe received them again after the failed write: deduplicated, billed once.
    duplicates = fake(stack).meter_event_duplicates
    assert all(duplicates.get(i, 0) >= 1 for i in accepted), duplicates


# -- webhooks ----------------------------------------------------------------------------------


def customer_updated(stack: LocalStack, api: Client, name: str) -> tuple[dict[str, Any], Delivered, dict[str, Any]]:
    customer = new_customer(api)
    settled(api)  # Stripe's customer.created for it, applied before this scenario's faults
    current = fake(stack).retrieve_customer(customer["processor_id"])
    newest = dict(current, name=name, metadata={**current["metadata"], "throttle": name})
    body = event("customer.updated", newest, created=int(current["created"]) + 1)
    return body, Delivered(body, customer["id"], "customer", customer["processor_id"]), newest


def test_the_webhook_ack_throttled_past_the_retries_is_503_and_the_redelivery_is_stored_once(
        stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    webhook_table = table(stack, "WebhookFunction", "WEBHOOK_EVENTS_TABLE")
    body, delivered, newest = customer_updated(stack, api, "after a throttle")
    throttle(api, "PutItem", BOTO3_ATTEMPTS, webhook_table)
    resp = deliver(api, body)
    assert_unavailable(resp)
    assert api.get(f"/v1/webhook-events/{body['id']}").status_code == 404

    # Stripe delivers again (re-signed); then once more, a duplicate.
    throttle(api, "PutItem", BOTO3_ATTEMPTS - 1, webhook_table)  # absorbed by the SDK's retries
    assert deliver(api, body).json() == {"received": True, "duplicate": False}
    assert deliver(api, body).json() == {"received": True, "duplicate": True}
    check_webhooks(stack, api, [delivered], newest={("customer", delivered.object_id): newest})
    assert pending_faults(stack, api) == {}


def test_a_throttled_reconcile_is_retried_by_the_stream_and_applied_once(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    body, delivered, newest = customer_updated(stack, api, "reconciled after a throttle")
    throttle(api, "TransactWriteItems", PYNAMODB_ATTEMPTS, table(stack, "WebhookProcessorFunction",
                                                                 "CUSTOMERS_TABLE"))
    assert deliver(api, json.loads(json.dumps(body))).json() == {"received": True, "duplicate": False}
    (stored,) = check_webhooks(stack, api, [delivered],
                               newest={("customer", delivered.object_id): newest}).values()
    # The first attempt failed (throttled), the stream's retry applied it.
    assert stored["status"] == "processed" and stored["attempts"] == 2 and stored["error"] is None
    assert pending_faults(stack, api) == {}
