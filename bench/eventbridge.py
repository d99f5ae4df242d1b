"""EventBridge in and out through the local stack (DESIGN.md section 8).

1. Inbound, with webhook_processor and the publisher paused: N Stripe events
   through the partner event source (a Stripe event destination) plus D of
   them again through the webhook route (a migration running both): Lambda
   invocations of the inbound function per event, DynamoDB write requests per
   delivery (one conditional PutItem, a duplicate included), the write units
   a stored row costs by DynamoDB's size rule, and processor calls (none).
2. Processing resumed: thin events cost one processor read each when applied.
3. Outbound: every ledger row written so far (the events above, plus PATCHes
   of the same customers), published: PutEvents calls and publisher
   invocations per published event, and seconds until all were published.

DynamoDB requests are counted by bench.metering's proxy in front of the
stack's moto; invocations by the stack's runtimes; PutEvents calls and
entries by the stack's EventBridge stand-in; processor calls by the Fake.
Dollars use AWS's public on-demand prices, us-east-1, dated below; Lambda
duration is left out (it is not measured here).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from typing import Any

import requests

from bench.metering import WRITE_OPERATIONS
from bench.proxy import counted_stack
from devstack.dynamodb import client
from devstack.trigger import build, eventbridge_event, signature_header

EVENTS = int(os.environ.get("BENCH_EVENTBRIDGE_EVENTS", "200"))
DUPLICATES = int(os.environ.get("BENCH_EVENTBRIDGE_DUPLICATES", "50"))
THIN_SHARE = 4  # every 4th event is thin
PATCHES = int(os.environ.get("BENCH_EVENTBRIDGE_PATCHES", "100"))
CUSTOMERS = 20
SECRET = "whsec_bench"  # noqa: S105 - a local stack's signing secret
PAUSED = ("WebhookProcessorFunction.Stream", "EventPublisherFunction.Ledger", "EventPublisherFunction.UsageFailed")

# AWS public on-demand prices, us-east-1, as AWS published them in January 2025
# (DynamoDB on-demand after its November 2024 price cut), USD per million.
PRICES_DATED = "2025-01"
EVENTBRIDGE_PARTNER_EVENTS = 1.00  # per million partner (or custom) events ingested
LAMBDA_REQUESTS = 0.20  # per million invocations
API_GATEWAY_REST = 3.50  # per million REST API requests (first 333 million)
DYNAMODB_WRITE_UNITS = 0.625  # per million on-demand write request units


def _write_units(item: dict[str, Any]) -> int:
    """DynamoDB's rule: 1 write unit per started KB of the item (names and values, UTF-8)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, raw),) = value.items()
        size += 1 if kind == "BOOL" else len(str(raw).encode())
    return max(1, math.ceil(size / 1024))


def run() -> list[dict[str, Any]]:
    with counted_stack(concurrency=4, webhook_secrets=SECRET) as (stack, counter):
        assert stack.streams is not None and stack.fake_stripe is not None and stack.eventbridge is not None
        base = stack.url
        session = requests.Session()
        customers = [session.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30).json()
                     for _ in range(CUSTOMERS)]
        stack.drain(60)
        pollers = [stack.streams.poller(name) for name in PAUSED]
        for poller in pollers:
            poller.stop()

        now = int(time.time())
        events = []
        for i in range(EVENTS):
            customer = customers[i % CUSTOMERS]
            if i % THIN_SHARE == THIN_SHARE - 1:
                events.append(build("v1.customer.updated", created=now + i,
                                    sets=[("related_object.id", customer["processor_id"])]))
            else:
                events.append(build("customer.updated", created=now + i,
                                    sets=[("data.object.id", customer["processor_id"]),
                                          ("data.object.name", f"bench {i}")]))
        inbound = stack.runtimes["StripeEventsFunction"]
        invocations_before = inbound.invocations
        calls_before = len(stack.fake_stripe.fake.calls)
        counter.reset()
        started = time.monotonic()
        stored = sum(1 for e in events if session.post(f"{base}/_local/events/partner", json=eventbridge_event(e),
                                                       timeout=60).json()["delivered"][0]["result"]["duplicate"]
                     is False)
        inbound_seconds = time.monotonic() - started
        duplicates = 0
        for e in events[:DUPLICATES]:
            payload = json.dumps(e).encode()
            answer = session.post(f"{base}/v1/webhooks/stripe", data=payload, timeout=60, headers={
                "Content-Type": "application/json", "Stripe-Signature": signature_header(payload, SECRET)}).json()
            duplicates += int(answer.get("duplicate") is True)
        inbound_writes = sum(n for op, n in counter.counts.items() if op in WRITE_OPERATIONS)
        inbound_invocations = inbound.invocations - invocations_before
        ack_calls = len(stack.fake_stripe.fake.calls) - calls_before
        ddb = client(counter.upstream)  # past the proxy: these reads are not the bench's
        webhook_table = next(t.name for t in stack.stack.tables() if t.logical_id == "WebhookEventsTable")
        units = [_write_units(ddb.get_item(TableName=webhook_table, Key={"pk": {"S": e["id"]}})["Item"])
                 for e in events]
        snapshot_units = [u for e, u in zip(events, units, strict=True) if "data" in e]
        thin_units = [u for e, u in zip(events, units, strict=True) if "data" not in e]

        # Processing: thin events read their object from the processor.
        processor = stack.streams.poller(PAUSED[0])
        processor.start()
        # The publisher's pollers are still paused (drain() would refuse them): this one alone.
        processor.drain(300)
        apply_calls = [c for c in stack.fake_stripe.fake.calls[calls_before + ack_calls:]
                       if c["operation"] == "retrieve_object"]
        thin_count = len(thin_units)

        # More ledger rows, through the API, then publish everything.
        for i in range(PATCHES):
            customer = customers[i % CUSTOMERS]
            current = session.get(f"{base}/v1/customers/{customer['id']}", timeout=30).json()
            session.patch(f"{base}/v1/customers/{customer['id']}", json={"name": f"patched {i}"}, timeout=30,
                          headers={"If-Match": f'"{current["lock_version"]}"'})
        bridge = stack.eventbridge
        published_before = len(bridge.published())
        calls_before_put = bridge.put_events_calls
        publisher = stack.runtimes["EventPublisherFunction"]
        publisher_before = publisher.invocations
        started = time.monotonic()
        for poller in pollers[1:]:
            poller.start()
        drained = stack.drain(600)
        publish_seconds = time.monotonic() - started
        published = len(bridge.published()) - published_before
        put_calls = bridge.put_events_calls - calls_before_put
        publisher_invocations = publisher.invocations - publisher_before
        # Every ledger row, not only the customers': the Fake's test-mode
        # catalog (products, prices) has its rows too. Counted past the proxy.
        ledger_table = next(t.name for t in stack.stack.tables() if t.logical_id == "EventsTable")
        ledger_rows = sum(page["Count"] for page in ddb.get_paginator("scan").paginate(
            TableName=ledger_table, Select="COUNT"))

    deliveries = EVENTS + DUPLICATES
    mean_units = sum(units) / len(units)
    per_million = EVENTBRIDGE_PARTNER_EVENTS + LAMBDA_REQUESTS * inbound_invocations / EVENTS \
        + DYNAMODB_WRITE_UNITS * mean_units
    webhook_per_million = API_GATEWAY_REST + LAMBDA_REQUESTS + DYNAMODB_WRITE_UNITS * mean_units
    name = "eventbridge"
    return [
        {"benchmark": name, "metric": f"partner events stored ({EVENTS}, every {THIN_SHARE}th thin)",
         "value": stored, "unit": f"of {EVENTS}"},
        {"benchmark": name, "metric": "partner events per second (one sender)", "value":
         round(EVENTS / inbound_seconds, 1), "unit": "/s"},
        {"benchmark": name, "metric": "the same events again through the webhook: duplicates",
         "value": duplicates, "unit": f"of {DUPLICATES}"},
        {"benchmark": name, "metric": "inbound Lambda invocations per partner event",
         "value": round(inbound_invocations / EVENTS, 3), "unit": f"{inbound_invocations} for {EVENTS}"},
        {"benchmark": name, "metric": "DynamoDB write requests per delivery (both paths)",
         "value": round(inbound_writes / deliveries, 3), "unit": f"{inbound_writes} for {deliveries}"},
        {"benchmark": name, "metric": "write units per stored row: snapshot customer.updated",
         "value": round(sum(snapshot_units) / max(len(snapshot_units), 1), 2), "unit": "WRU (1 per started KB)"},
        {"benchmark": name, "metric": "write units per stored row: thin v1.customer.updated",
         "value": round(sum(thin_units) / max(len(thin_units), 1), 2), "unit": "WRU"},
        {"benchmark": name, "metric": "processor calls while storing (target 0)", "value": ack_calls,
         "unit": "calls"},
        {"benchmark": name, "metric": "processor reads per thin event applied",
         "value": round(len(apply_calls) / max(thin_count, 1), 2), "unit": f"{len(apply_calls)} for {thin_count}"},
        {"benchmark": name, "metric": "USD per million events stored, EventBridge path",
         "value": round(per_million, 2), "unit": f"events + invocations + writes, prices {PRICES_DATED}"},
        {"benchmark": name, "metric": "USD per million events stored, webhook path",
         "value": round(webhook_per_million, 2), "unit": f"API Gateway + invocations + writes, {PRICES_DATED}"},
        {"benchmark": name, "metric": "ledger rows published" + ("" if drained else " TIMED OUT"),
         "value": published, "unit": f"of {ledger_rows - published_before} ledger rows unpublished at the pause"},
        {"benchmark": name, "metric": "PutEvents calls per published event",
         "value": round(put_calls / max(published, 1), 3), "unit": f"{put_calls} for {published}"},
        {"benchmark": name, "metric": "publisher invocations per published event",
         "value": round(publisher_invocations / max(published, 1), 3),
         "unit": f"{publisher_invocations} for {published}"},
        {"benchmark": name, "metric": "seconds until all published", "value": round(publish_seconds, 2),
         "unit": "s"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<70} {row['value']:>10} {row['unit']}")
