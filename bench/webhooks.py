"""Stripe webhooks through the local stack (DESIGN.md section 7: "Webhook
ack: one DynamoDB write request, no processor call").

1. With webhook_processor's stream poller paused, N signed customer.updated
   deliveries plus D redeliveries of some of them, from a pool of client
   threads: acknowledgements per second, latency, DynamoDB requests (all
   operations, and writes) per delivery, and the processor calls made.
2. The poller resumed: seconds until every event is processed, and DynamoDB
   write requests per processed event (one TransactWriteItems each).

DynamoDB requests are counted where they arrive, through the counting proxy
of bench.metering in front of the stack's moto; processor calls are the
Fake's own record.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.metering import WRITE_OPERATIONS
from bench.proxy import counted_stack
from devstack.trigger import build, signature_header

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "300"))
REDELIVERIES = int(os.environ.get("BENCH_WEBHOOK_REDELIVERIES", "100"))
CLIENT_THREADS = int(os.environ.get("BENCH_WEBHOOK_THREADS", "8"))
CUSTOMERS = 20
SECRET = "whsec_bench"  # noqa: S105 - a local stack's signing secret
PROCESSOR_STREAM = "WebhookProcessorFunction.Stream"


def _deliver_all(url: str, payloads: list[bytes]) -> tuple[list[float], list[int], float]:
    local = threading.local()

    def post(payload: bytes) -> tuple[float, int]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        resp = session.post(url, data=payload, timeout=60, headers={
            "Content-Type": "application/json", "Stripe-Signature": signature_header(payload, SECRET)})
        return time.perf_counter() - started, resp.status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        results = list(pool.map(post, payloads))
    return [r[0] for r in results], [r[1] for r in results], time.monotonic() - started


def run() -> list[dict[str, Any]]:
    with counted_stack(concurrency=4, webhook_secrets=SECRET) as (stack, counter):
        base = stack.url
        processor_ids = [requests.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30)
                         .json()["processor_id"] for _ in range(CUSTOMERS)]
        assert stack.streams is not None and stack.fake_stripe is not None
        poller = stack.streams.poller(PROCESSOR_STREAM)
        stack.settle(60)  # Stripe's customer.created webhooks for them, applied before anything is counted
        poller.stop()  # acknowledge first, reconcile after: each phase's requests are its own

        now = int(time.time()) + 1  # after the customers' watermarks (their customer.created)
        events = [build("customer.updated", created=now + i,
                        sets=[("data.object.id", processor_ids[i % CUSTOMERS]), ("data.object.name", f"bench {i}")])
                  for i in range(EVENTS)]
        payloads = [json.dumps(e).encode() for e in events]
        payloads += [payloads[i % len(payloads)] for i in range(REDELIVERIES)]
        counter.reset()
        calls_before = len(stack.fake_stripe.fake.calls)
        latencies, statuses, seconds = _deliver_all(base + "/v1/webhooks/stripe", payloads)
        ack_counts = dict(counter.counts)
        ack_calls = len(stack.fake_stripe.fake.calls) - calls_before

        counter.reset()
        started = time.monotonic()
        poller.start()
        drained = stack.drain(600)
        drain_seconds = time.monotonic() - started
        processed = sum(1 for e in events if requests.get(f"{base}/v1/webhook-events/{e['id']}", timeout=30)
                        .json()["status"] in ("processed", "stale"))
        reconcile_writes = sum(n for op, n in counter.counts.items() if op in WRITE_OPERATIONS)
        reconcile_calls = len(stack.fake_stripe.fake.calls) - calls_before - ack_calls
    deliveries = len(payloads)
    ok = sum(1 for s in statuses if s == 200)
    ack_requests = sum(n for op, n in ack_counts.items() if not op.startswith("GetRecords") and op not in (
        "GetShardIterator", "DescribeStream", "ListStreams"))
    ack_writes = sum(n for op, n in ack_counts.items() if op in WRITE_OPERATIONS)
    quantiles = statistics.quantiles(latencies, n=20)
    name = "webhooks"
    return [
        {"benchmark": name, "metric": f"deliveries acknowledged 200 ({EVENTS} new + {REDELIVERIES} redelivered)",
         "value": ok, "unit": f"of {deliveries}"},
        {"benchmark": name, "metric": f"acknowledgements per second ({CLIENT_THREADS} client threads)",
         "value": round(deliveries / seconds, 1), "unit": "/s"},
        {"benchmark": name, "metric": "ack latency p50", "value": round(statistics.median(latencies) * 1000, 1),
         "unit": "ms"},
        {"benchmark": name, "metric": "ack latency p95", "value": round(quantiles[18] * 1000, 1), "unit": "ms"},
        {"benchmark": name, "metric": "DynamoDB write requests per delivery (target 1)",
         "value": round(ack_writes / deliveries, 3), "unit": f"{ack_writes} for {deliveries}"},
        {"benchmark": name, "metric": "DynamoDB requests of any kind per delivery",
         "value": round(ack_requests / deliveries, 3), "unit": json.dumps(ack_counts, sort_keys=True)},
        {"benchmark": name, "metric": "processor calls while acknowledging (target 0)", "value": ack_calls,
         "unit": "calls"},
        {"benchmark": name, "metric": "seconds to reconcile all" + ("" if drained else " TIMED OUT"),
         "value": round(drain_seconds, 2), "unit": f"{processed} of {EVENTS} processed"},
        {"benchmark": name, "metric": "DynamoDB write requests per processed event",
         "value": round(reconcile_writes / max(processed, 1), 3), "unit": f"{reconcile_writes} for {processed}"},
        {"benchmark": name, "metric": "processor calls while reconciling", "value": reconcile_calls, "unit": "calls"},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<70} {row['value']:>10} {row['unit']}")
