"""Usage reconciliation's cost (issue 20, DESIGN.md section 10): a simulated
day of usage on the Fake, in process on moto, reconciled by one day run;
per customer-meter-day the Stripe requests, the DynamoDB read units and the
Lambda seconds, then the figures for a day of 10,000 customers x 3 meters
(hourly runs and the daily run) in dollars, and a run's wall time at the
rate budget.

Measured on a sample (RECON_BENCH_CUSTOMERS customers, 3 meters, one event
per pair and hour), scaled linearly to 10,000 customers: every figure is
per customer-meter pair, and a run's work is a loop over pairs. Read units
are counted as DynamoDB bills them (moto reports none): a Query page of
index entries costs its size in 4 KB units, halved (eventually consistent),
and each row read in BatchGetItem ceil(size / 4 KB) halved. Lambda seconds
are the run's compute, measured with the budget lifted, plus the wait the
budget imposes (Lambda bills the wall time, waits included).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Final

from bench.costs import PRICES

ROOT = Path(__file__).resolve().parents[1]
CUSTOMERS: Final = int(os.environ.get("RECON_BENCH_CUSTOMERS", "20"))
METERS: Final = ("api_requests", "storage_gb_hours", "seats")
TARGET_PAIRS: Final = 10_000 * len(METERS)
BUDGET: Final = 20.0  # UsageReconcileRequestsPerSecond's default
MEMORY_GB: Final = 1.0  # the reconciler's MemorySize
ENTRY_BYTES: Final = 120  # a by_accepted entry: pk, lane, inserted_at, customer_id, event_name


def _row_bytes(row: Any) -> int:
    size = 0
    for name, value in row.serialize().items():
        (kind, raw), = value.items()
        size += len(name.encode()) + (len(str(raw).encode()) if kind == "S" else len(str(raw)) // 2 + 1)
    return size


def run() -> list[dict[str, Any]]:
    import sys

    # In process, as the reconciler runs: the layer's package on the path (make bench sets none).
    if str(ROOT / "layers" / "common") not in sys.path:
        sys.path.insert(0, str(ROOT / "layers" / "common"))
    import boto3
    from moto import mock_aws

    from billing.core import settings
    from billing.data import tables
    from devstack.dynamodb import create_table_request
    from devstack.template import REGION, Stack

    stack = Stack(ROOT / "template.yaml", stack_name="billing-bench-recon")
    spec = next(f for f in stack.functions({}) if f.logical_id == "ApiFunction")
    os.environ.update({**spec.environment, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_TRACE_DISABLED": "true",
                       "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"})
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    settings.load.cache_clear()
    with mock_aws():
        tables._connection = None
        ddb = boto3.client("dynamodb", region_name=REGION)
        for table in stack.tables():
            ddb.create_table(**create_table_request(table))
        try:
            return _measure()
        finally:
            from billing.core.observability import metrics

            metrics.clear_metrics()  # domain metrics no handler flushes: not printed at exit


def _measure() -> list[dict[str, Any]]:
    from billing.customers import create
    from billing.customers.keys import CustomerAttrs
    from billing.data.ledger import Actor
    from billing.data.usage_tables import MeterEventRow
    from billing.metering import delivery, intake
    from billing.metering.delivery import DeliveryPolicy, Pending
    from billing.metering.intake import UsageInput
    from billing.metering.reconciliation import runs, worker
    from billing.processor import set_processor
    from devstack.fake_stripe import FakeProcessor

    set_processor(FakeProcessor())
    actor = Actor("api", "bench")
    day = int(time.time()) // 86400 * 86400 - 86400
    identifiers: list[str] = []
    for c in range(CUSTOMERS):
        customer, _ = create.fetch_or_create("User", f"bench-{c}", CustomerAttrs(), actor)
        for meter in METERS:
            for hour in range(24):
                identifier = f"b-{c}-{meter}-{hour}"
                intake.accept(identifier, UsageInput(event_name=meter, value=1 + hour % 5, customer_id=customer["id"],
                                                     timestamp=day + hour * 3600 + 60), actor)
                identifiers.append(identifier)
    rows = []
    for begin in range(0, len(identifiers), 100):
        rows += list(MeterEventRow.batch_get(identifiers[begin:begin + 100]))
    delivery.deliver([Pending(identifier=r.pk, event_name=r.event_name, stripe_customer_id=r.stripe_customer_id,
                              value=int(r.value), timestamp=int(r.occurred_ts), inserted_at=r.inserted_at,
                              pending_since=r.pending_since or r.inserted_at) for r in rows],
                     deadline=time.monotonic() + 600,
                     settings=DeliveryPolicy(mode="v2", tries=1, backoff_base=0.001, backoff_cap=0.001, concurrency=1))
    pairs = CUSTOMERS * len(METERS)
    events = len(identifiers)
    started, _ = runs.start(actor, start=day, end=day + 86400)
    begun = time.perf_counter()
    outcome = worker.advance(started["id"], policy=worker.Policy(settle_seconds=3600, requests_per_second=1e9))
    compute = time.perf_counter() - begun
    run = runs.get(started["id"], limit=1)
    assert outcome == "done" and run["drifted"] == 0, run
    # Read units as billed: index pages (1 MB pages; ENTRY_BYTES an entry) and the rows.
    row_units = sum(math.ceil(_row_bytes(r) / 4096) * 0.5 for r in rows)
    index_units = math.ceil(events * ENTRY_BYTES / 4096) * 0.5 + 16 * 0.5  # + one minimum page per lane
    per_pair = {
        "stripe_requests": run["stripe_requests"] / pairs,
        "read_units": (row_units + index_units) / pairs,
        "compute_s": compute / pairs,
    }
    wait_s = 1.0 / BUDGET
    lambda_s = max(per_pair["compute_s"], wait_s)  # the budget's wait and the compute overlap at best
    # A day at 10,000 x 3: the daily run (1 request per pair) and 24 hourly runs (1 each per pair
    # with usage that hour; here every pair has usage every hour). Each hourly run reads the rows
    # accepted from 5 min before its hour to its end plus the settle delay: about 2 hours of rows.
    daily_requests = TARGET_PAIRS * per_pair["stripe_requests"]
    hourly_requests = 24 * TARGET_PAIRS
    reads_day = TARGET_PAIRS * per_pair["read_units"] * (1 + 2)  # the daily run + the hourly runs' overlap
    lambda_day = (daily_requests + hourly_requests) * lambda_s
    dollars = {"DynamoDB reads": reads_day * PRICES["dynamodb_read_unit"].dollars,
               "Lambda duration": lambda_day * MEMORY_GB * PRICES["lambda_arm64_gb_second"].dollars}
    name = "reconciliation"
    return [
        {"benchmark": name, "metric": "sample: customers x meters, events",
         "value": f"{CUSTOMERS}x{len(METERS)}, {events}", "unit": "one event per pair and hour"},
        {"benchmark": name, "metric": "Stripe requests per customer-meter-day (daily run)",
         "value": round(per_pair["stripe_requests"], 3), "unit": "requests"},
        {"benchmark": name, "metric": "read units per customer-meter-day (daily run)",
         "value": round(per_pair["read_units"], 3), "unit": "RRU (24 events a pair-day)"},
        {"benchmark": name, "metric": "compute per customer-meter-day (daily run)",
         "value": round(per_pair["compute_s"] * 1000, 2), "unit": "ms (moto, in process)"},
        {"benchmark": name, "metric": "Lambda seconds per customer-meter-day at the budget",
         "value": round(lambda_s, 4), "unit": f"s (1/{BUDGET:g} s wait per request)"},
        {"benchmark": name, "metric": "10,000 x 3: Stripe requests a day (24 hourly + 1 daily run)",
         "value": int(daily_requests + hourly_requests), "unit": "requests"},
        {"benchmark": name, "metric": "10,000 x 3: daily run wall time at the budget",
         "value": round(daily_requests / BUDGET / 60, 1), "unit": f"minutes at {BUDGET:g} req/s"},
        {"benchmark": name, "metric": "10,000 x 3: an hourly run's wall time at the budget",
         "value": round(TARGET_PAIRS / BUDGET / 60, 1), "unit": f"minutes at {BUDGET:g} req/s"},
        *[{"benchmark": name, "metric": f"10,000 x 3: dollars a day, {part}", "value": round(value, 4),
           "unit": "USD"} for part, value in dollars.items()],
        {"benchmark": name, "metric": "10,000 x 3: dollars a day, total", "value": round(sum(dollars.values()), 4),
         "unit": "USD (Stripe requests are not billed per call)"},
    ]


if __name__ == "__main__":
    from bench.__main__ import _table

    print(_table(run()))
