"""A renewal burst against the list indexes (issue 19 item 14): the hottest
partition key, of a table or of an index, when 10,000 invoices renew in one
minute, against DynamoDB's 1,000 write units per second per key.

A sample of renewals goes through the local stack as Stripe delivers them
(customer.subscription.updated to the new period, invoice.created draft,
invoice.finalized open, invoice.paid, charge.succeeded), on subscriptions
that exist before counting starts. Table keys are counted from the write
requests (bench.proxy); index keys, and their write units (DynamoDB bills a
GSI write by the projected entry's size), from the tables' streams
(bench.partitions). Per key, the sample's writes scale to the burst's: keys
are picked by hash, so a key's share of the sample is its share of the burst.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import boto3
import requests

from bench import partitions
from bench.proxy import counted_stack
from devstack.template import REGION
from devstack.trigger import build, signature_header

SECRET = "whsec_bench"  # noqa: S105 - a local stack's signing secret
SAMPLE = 150  # renewals pushed through the stack
CUSTOMERS = 10
BURST = 10_000  # invoices renewed
BURST_SECONDS = 60
KEY_LIMIT = 1_000  # DynamoDB: write units per second per partition key
TABLES = ("SubscriptionsTable", "InvoicesTable", "ChargesTable")


def _post(session: requests.Session, base: str, event: dict[str, Any]) -> None:
    payload = json.dumps(event).encode()
    resp = session.post(f"{base}/v1/webhooks/stripe", data=payload, timeout=60, headers={
        "Content-Type": "application/json", "Stripe-Signature": signature_header(payload, SECRET)})
    resp.raise_for_status()


def _renewal(customer: str, subscription: str, n: int, now: int) -> list[dict[str, Any]]:
    invoice, charge = f"in_bench{uuid.uuid4().hex[:16]}", f"ch_bench{uuid.uuid4().hex[:16]}"
    period = now + 30 * 86400

    def inv(type_: str, status: str, at: int) -> dict[str, Any]:
        return build("invoice.paid", created=at, sets=[
            ("type", type_), ("data.object.id", invoice), ("data.object.customer", customer),
            ("data.object.status", status), ("data.object.created", now + n),
            ("data.object.subscription", subscription), ("data.object.billing_reason", "subscription_cycle")])
    return [
        build("customer.subscription.updated", created=now + 1, sets=[
            ("data.object.id", subscription), ("data.object.customer", customer),
            ("data.object.status", "active"), ("data.object.current_period_end", period)]),
        inv("invoice.created", "draft", now + 1), inv("invoice.finalized", "open", now + 2),
        inv("invoice.paid", "paid", now + 3),
        build("charge.succeeded", created=now + 3, sets=[
            ("data.object.id", charge), ("data.object.customer", customer), ("data.object.invoice", invoice),
            ("data.object.created", now + n)]),
    ]


def run() -> list[dict[str, Any]]:
    name = "renewals"
    with counted_stack(concurrency=4, webhook_secrets=SECRET) as (stack, counter):
        base = stack.url
        session = requests.Session()
        # These tables have no stream deployed; the bench turns one on in its own
        # stack to see every write's images (what the indexes are written from).
        ddb = boto3.client("dynamodb", endpoint_url=counter.upstream, region_name=REGION,
                           aws_access_key_id="bench", aws_secret_access_key="bench")  # noqa: S106
        stream_arns = {t.logical_id: str(ddb.update_table(TableName=t.name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})["TableDescription"]["LatestStreamArn"])
            for t in stack.stack.tables() if t.logical_id in TABLES}
        customers = [session.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30).json()
                     ["processor_id"] for _ in range(CUSTOMERS)]
        stack.settle(60)
        now = int(time.time()) - 3600
        subscriptions = [f"sub_bench{uuid.uuid4().hex[:16]}" for _ in range(SAMPLE)]
        for n, sub in enumerate(subscriptions):
            _post(session, base, build("customer.subscription.created", created=now, sets=[
                ("data.object.id", sub), ("data.object.customer", customers[n % CUSTOMERS]),
                ("data.object.status", "active"), ("data.object.created", now - 86400 + n)]))
        stack.settle(120)
        counter.reset()
        ours: set[str] = set()
        for n, sub in enumerate(subscriptions):
            for event in _renewal(customers[n % CUSTOMERS], sub, n, now + 100):
                ours.add(event["data"]["object"]["id"])
                _post(session, base, event)
        stack.settle(120)

        writes: Counter[tuple[str, str]] = Counter()
        units: Counter[tuple[str, str]] = Counter()
        for table in (t for t in stack.stack.tables() if t.logical_id in TABLES):
            def wanted(record: dict[str, Any]) -> bool:
                # The renewal's changes: subscriptions' updates (not their creation before counting).
                return (str(record["dynamodb"]["Keys"]["pk"]["S"]) in ours
                        and ("OldImage" in record["dynamodb"] or not str(record["dynamodb"]["Keys"]["pk"]["S"])
                             .startswith("sub_")))
            records = list(partitions.stream_records(counter.upstream, stream_arns[table.logical_id]))
            for (index, key), count in partitions.index_writes(table, iter(records), wanted).items():
                writes[(f"{table.logical_id}.{index}", key)] += count
            for (index, key), count in partitions.index_writes(table, iter(records), wanted, units=True).items():
                units[(f"{table.logical_id}.{index}", key)] += count
        scale = BURST / SAMPLE / BURST_SECONDS
        rows: list[dict[str, Any]] = [{"benchmark": name, "metric": "renewals pushed through the stack (sample)",
                                       "value": SAMPLE, "unit": f"scaled to {BURST:,} in {BURST_SECONDS}s"}]
        top_units = partitions.hottest(units)
        for where, (key, count) in sorted(partitions.hottest(writes).items()):
            key_units = units[(where, key)]
            rate, unit_rate = count * scale, key_units * scale
            verdict = "over" if unit_rate > KEY_LIMIT else "under"
            rows.append({"benchmark": name, "metric": f"hottest key of {where}: {key[:32]}",
                         "value": f"{rate:,.0f}",
                         "unit": f"writes/s, {unit_rate:,.0f} WCU/s ({verdict} {KEY_LIMIT:,}; most WCU on "
                                 f"one key: {top_units[where][1] * scale:,.0f})"})
        return rows
