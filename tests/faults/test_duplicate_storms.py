"""Duplicate storms: the same request many times at once.

A single webhook event delivered 10 times concurrently (one row, one ledger
entry, one projection change) is tests/integration/test_webhooks.py's
test_duplicate_storm_gives_one_row_one_ledger_entry_one_projection_change;
not repeated here. This module adds the usage storms and a storm of several
events of one customer, each delivered several times, all at once.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import Delivered, check_usage, check_webhooks, quiet
from tests.integration.usage_helpers import billed, new_customer, uid, usage_body
from tests.integration.webhook_helpers import event, fake, sign

STORM = 20


def storm(api: Client, requests_: list[tuple[str, str, bytes, dict[str, str]]]) -> list[requests.Response]:
    """Send every request at once: one thread and one connection each,
    released together by a barrier."""
    barrier = threading.Barrier(len(requests_))

    def send(item: tuple[str, str, bytes, dict[str, str]]) -> requests.Response:
        method, path, body, headers = item
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return session.request(method, api.base_url + path, data=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        return list(pool.map(send, requests_))


def put(identifier: str, body: dict[str, Any]) -> tuple[str, str, bytes, dict[str, str]]:
    return "PUT", f"/v1/usage/{identifier}", json.dumps(body).encode(), {"Content-Type": "application/json"}


def test_twenty_concurrent_puts_of_one_event_write_one_row_and_bill_it_once(stack: LocalStack, api: Client
                                                                           ) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    identifier = uid("storm")
    # The same request, naming its customer each of the three ways.
    ways = [usage_body(customer, 9),
            {"event_name": "api_requests", "value": 9, "stripe_customer_id": customer["processor_id"]},
            {"event_name": "api_requests", "value": 9,
             "owner": {"type": customer["owner_type"], "id": customer["owner_id"]}}]
    responses = storm(api, [put(identifier, ways[i % len(ways)]) for i in range(STORM)])

    assert sorted(r.status_code for r in responses) == [200] * (STORM - 1) + [202], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    check_usage(stack, api, {identifier: 9})
    assert billed(stack, [identifier])[identifier]["received"] == 1  # no fault: not even a resend


def test_a_storm_of_conflicting_bodies_keeps_the_first_and_refuses_the_rest(stack: LocalStack, api: Client
                                                                           ) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    identifier = uid("clash")
    values = [1 + i % 2 for i in range(STORM)]  # two different requests under one identifier
    responses = storm(api, [put(identifier, usage_body(customer, v)) for v in values])

    by_status = Counter(r.status_code for r in responses)
    assert by_status[202] == 1 and set(by_status) <= {200, 202, 409}, [r.text for r in responses]
    winner = next(values[i] for i, r in enumerate(responses) if r.status_code == 202)
    for value, resp in zip(values, responses, strict=True):
        if value == winner:
            assert resp.status_code in (200, 202) and resp.json()["value"] == winner
        else:
            assert resp.status_code == 409 and resp.json()["error"]["type"] == "identifier_conflict"
    check_usage(stack, api, {identifier: winner})


def test_several_events_of_one_customer_each_delivered_four_times_at_once(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    rng = random.Random(7_2024)  # noqa: S311 - a reproducible storm
    customer = new_customer(api)
    current = fake(stack).retrieve_customer(customer["processor_id"])
    base = int(current["created"]) + 10
    versions = [dict(current, name=f"storm {i}", metadata={**current["metadata"], "version": str(i)})
                for i in range(5)]
    fake(stack).put_object(versions[-1])  # what Stripe holds now
    events = [event("customer.updated", v, created=base + i) for i, v in enumerate(versions)]
    deliveries = [e for e in events for _ in range(4)]
    rng.shuffle(deliveries)
    signed = []
    for body in deliveries:
        payload = json.dumps(body).encode()
        signed.append(("POST", "/v1/webhooks/stripe", payload,
                       {"Content-Type": "application/json", "Stripe-Signature": sign(payload)}))
    responses = storm(api, signed)

    assert [r.status_code for r in responses] == [200] * len(signed), [r.text for r in responses]
    # Each event stored once: exactly one delivery of each was not a duplicate.
    first = Counter(body["id"] for body, r in zip(deliveries, responses, strict=True) if not r.json()["duplicate"])
    assert first == dict.fromkeys((e["id"] for e in events), 1)
    delivered = [Delivered(e, customer["id"], "customer", customer["processor_id"]) for e in events]
    check_webhooks(stack, api, delivered, newest={("customer", customer["processor_id"]): versions[-1]})
