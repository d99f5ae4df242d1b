"""An Idempotency-Key never replays an answer that asks for a retry: a 207
whose items include a 5xx (an event throttled past the SDK's retries) runs
again on the retry (DynamoDB faults: moto's fault injector, so not on
DynamoDB Local)."""

from __future__ import annotations

import uuid

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.test_dynamodb_throttling import PYNAMODB_ATTEMPTS, table, throttle
from tests.integration.test_subscriptions import ok


def test_a_207_with_an_item_to_send_again_is_not_replayed(stack: LocalStack, api: Client) -> None:
    customer = ok(api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "batch@example.com"}), 201)
    events = [{"identifier": f"kept-{uuid.uuid4().hex[:12]}", "event_name": "api_requests", "value": 3,
               "customer_id": customer["id"]}]
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    # The event's one PutItem is throttled past the SDK's retries: its item is a 503.
    throttle(api, "PutItem", PYNAMODB_ATTEMPTS, table(stack, "ApiFunction", "METER_EVENTS_TABLE"))
    first = api.post("/v1/usage/batch", {"events": events}, headers=key)
    assert first.status_code == 207, first.text
    assert [r["status"] for r in first.json()["data"]] == [503]

    retried = api.post("/v1/usage/batch", {"events": events}, headers=key)
    assert retried.status_code == 207, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert [r["status"] for r in retried.json()["data"]] == [202]
    # Once every item is settled, the answer is kept and replayed.
    again = api.post("/v1/usage/batch", {"events": events}, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == retried.json()
    assert ok(api.get(f"/v1/usage/{events[0]['identifier']}"))["value"] == 3
