"""The hot path through the local stack (DESIGN.md section 4): what a host
app asks on every request, GET /v1/owners/{type}/{id}/billing (at most two
DynamoDB reads) and /entitlements (one), counted as DynamoDB requests where
they arrive (the counting proxy of bench.metering in front of the stack's
moto), not timed. The owner has a customer, a card and an active Pro
subscription whose webhooks (entitlements included) were applied.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import requests

from bench.proxy import CountingProxy, counted_stack

CALLS = int(os.environ.get("BENCH_BILLING_CALLS", "50"))
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
# The stream pollers' own requests, which run all along.
STREAM_OPERATIONS = frozenset({"GetRecords", "GetShardIterator", "DescribeStream", "ListStreams"})


def _counted(counter: CountingProxy, url: str) -> tuple[dict[str, int], list[int]]:
    counter.reset()
    statuses = [requests.get(url, timeout=30).status_code for _ in range(CALLS)]
    return {op: n for op, n in counter.counts.items() if op not in STREAM_OPERATIONS}, statuses


def subscribed_owner(base: str) -> tuple[str, dict[str, Any]]:
    """A new owner (type Bench) with a customer, a card and an active Pro
    subscription: its id and its customer."""
    owner_id = str(uuid.uuid4())
    customer: dict[str, Any] = requests.put(f"{base}/v1/owners/Bench/{owner_id}/customer", json={},
                                            timeout=30).json()
    pm = requests.post(f"{base}/v1/customers/{customer['id']}/payment-methods",
                       json={"payment_method_id": "pm_card_visa"}, timeout=30).json()["id"]
    (price,) = requests.get(f"{base}/v1/prices", params={"lookup_key": "pro_monthly"}, timeout=30).json()["data"]
    subscription = requests.post(f"{base}/v1/customers/{customer['id']}/subscriptions", timeout=30, json={
        "items": [{"price": price["id"]}], "default_payment_method": pm, "payment_behavior": "allow_incomplete"})
    assert subscription.status_code == 201, subscription.text
    return owner_id, customer


def run() -> list[dict[str, Any]]:
    with counted_stack(concurrency=2) as (stack, counter):
        base = stack.url
        owner_id, _ = subscribed_owner(base)
        owner = f"/v1/owners/Bench/{owner_id}"
        assert stack.settle(60), "the Fake's webhooks did not settle"
        answer = requests.get(f"{base}{owner}/billing", timeout=30).json()
        assert answer["subscriptions"] and answer["entitlements"], answer
        billing, billing_statuses = _counted(counter, f"{base}{owner}/billing")
        entitlements, entitlement_statuses = _counted(counter, f"{base}{owner}/entitlements")
    name = "billing"
    rows = []
    for route, counts, statuses, target in (("billing", billing, billing_statuses, 2),
                                            ("entitlements", entitlements, entitlement_statuses, 1)):
        reads = sum(n for op, n in counts.items() if op in READ_OPERATIONS)
        rows += [
            {"benchmark": name, "metric": f"GET /v1/owners/{{type}}/{{id}}/{route} answered 200", "value":
             statuses.count(200), "unit": f"of {CALLS}"},
            {"benchmark": name, "metric": f"DynamoDB reads per {route} call (target at most {target})",
             "value": round(reads / CALLS, 3), "unit": json.dumps(counts, sort_keys=True)},
        ]
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<70} {row['value']:>10} {row['unit']}")
