"""A run's progress: compare each customer-meter pair of the window, in
(customer_id, event_name) order, from the run's position on, and
checkpoint every few pairs (DESIGN.md section 10).

Each invocation reads our side of the window once (billing.metering.
reconciliation.tally), then asks Stripe per pair under the run's rate
budget until its time is nearly spent; the last checkpoint it writes is the
stream record the next invocation carries on from. A crash or a timeout
loses at most the pairs since the last checkpoint, which the stream's retry
of that record compares again: the drift rows are numbered from the run's
count, so the redone pairs write the same rows, and the report of an
interrupted run is the report of an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pynamodb.transactions import TransactWrite

from billing.core.observability import logger, metrics
from billing.customers import records as customers
from billing.data.ledger import SYSTEM, append
from billing.data.reads import find
from billing.data.reconciliation_tables import ReconRunRow
from billing.data.tables import connection
from billing.metering.reconciliation import drift, runs, summaries, tally
from billing.metering.reconciliation.tally import Bucket, Pair
from billing.metering.reconciliation.window import Window

CHECKPOINT_PAIRS: Final = 50
# Ledger rows (usage.drift_detected) per transaction.
LEDGER_BATCH: Final = 100


@dataclass(frozen=True)
class Policy:
    settle_seconds: int = 3600
    requests_per_second: float = 20.0
    checkpoint_pairs: int = CHECKPOINT_PAIRS


def _pairs(row: ReconRunRow, found: tally.Tally) -> list[Pair]:
    pairs = found.ordered_pairs()
    if row.customer_id and row.event_name and (row.customer_id, row.event_name) not in found.pairs:
        # A run naming both compares them even with no usage here: usage
        # sent to Stripe by something else still shows.
        customer = customers.load(row.customer_id, consistent=False)
        found.pairs[(row.customer_id, row.event_name)] = {}
        pairs = [(row.customer_id, row.event_name)]
        found.stripe_ids = {(row.customer_id, row.event_name): str(customer.processor_id)}
    position = tuple(row.position) if row.position else None
    return [p for p in pairs if position is None or p > position]


def _compare(pair: Pair, window: Window, found: tally.Tally, *, budget: summaries.RateBudget, now: float,
             policy: Policy) -> tuple[int, list[dict[str, Any]]]:
    """Buckets compared and the drift entries of one pair."""
    customer_id, event_name = pair
    local = found.pairs[pair]
    stripe_customer_id = next((b.stripe_customer_id for b in local.values()), None) \
        or found.stripe_ids.get(pair, "")
    stripe = summaries.hourly(window, stripe_customer_id=stripe_customer_id, event_name=event_name, budget=budget)
    hours = sorted(set(local) | {h for h, v in stripe.items() if v})
    entries: list[dict[str, Any]] = []
    for hour in hours:
        bucket = local.get(hour) or Bucket(stripe_customer_id=stripe_customer_id)
        value = stripe.get(hour, 0.0)
        last_canceled = (datetime.fromisoformat(bucket.last_canceled_at.replace("Z", "+00:00")).timestamp()
                         if bucket.last_canceled_at else None)
        classification = drift.classify(bucket.values, value, hour=hour, now=now,
                                        settle_seconds=policy.settle_seconds, last_canceled=last_canceled)
        if classification is not None:
            entries.append(drift.entry(customer_id, event_name, hour, bucket, value, classification))
    return len(hours), entries


def _publish(run_id: str, entries: list[dict[str, Any]]) -> None:
    """One usage.drift_detected ledger row per drifted bucket, on the
    customer's ledger (published to the bus at least once: a redone step
    may write its rows again; consumers dedupe on run and bucket)."""
    for begin in range(0, len(entries), LEDGER_BATCH):
        with TransactWrite(connection=connection()) as tw:
            for found in entries[begin:begin + LEDGER_BATCH]:
                append(tw, type_="usage.drift_detected", subject_type="customer", subject_id=found["customer_id"],
                       actor=SYSTEM, idempotency_key=f"{run_id}:{found['bucket']}",
                       data={"run_id": run_id, "bucket": found["bucket"], "event_name": found["event_name"],
                             "start": found["start"], "end": found["end"], "stripe": found["stripe"],
                             "reported": found["local"]["reported"], "difference": found["difference"],
                             "classification": found["classification"]})


def advance(run_id: str, *, step: int | None = None, policy: Policy | None = None,
            remaining_ms: Callable[[], int] | None = None, now: float | None = None) -> str:
    """Carry the run on from its checkpoint until it is done or time is
    nearly spent. `step`: the stream record's; an older one has nothing left
    to do. Returns what happened (for logs and tests)."""
    policy = policy or Policy()
    row = find(ReconRunRow, run_id)
    if row is None or row.status != runs.RUNNING:
        return "finished"
    if step is not None and step != int(row.step):
        return "stale"
    window = Window(int(row.start), int(row.end))
    moment = time.time() if now is None else now
    found = tally.tally(window, now=moment, customer_id=row.customer_id, event_name=row.event_name)
    todo = _pairs(row, found)
    budget = summaries.RateBudget(policy.requests_per_second)
    rows_read = found.rows_read
    buckets, entries, done_pairs = 0, [], 0
    for index, pair in enumerate(todo):
        compared, found_drift = _compare(pair, window, found, budget=budget, now=moment, policy=policy)
        buckets += compared
        entries += found_drift
        done_pairs += 1
        last = index == len(todo) - 1
        out_of_time = remaining_ms is not None and remaining_ms() < 30_000
        if last or done_pairs >= policy.checkpoint_pairs or out_of_time:
            if not _checkpoint(row, list(pair), buckets, entries, budget.requests, rows_read, done=last):
                return "superseded"
            buckets, entries, done_pairs, rows_read, budget.requests = 0, [], 0, 0, 0
            if out_of_time and not last:
                return "checkpointed"  # the checkpoint's stream record carries on
    if not todo and not _checkpoint(row, list(row.position) if row.position else None, 0, [], 0, rows_read,
                                    done=True):
        return "superseded"
    return "done"


def _checkpoint(row: ReconRunRow, position: list[str] | None, buckets: int, entries: list[dict[str, Any]],
                requests: int, rows_read: int, *, done: bool) -> bool:
    value = sum(abs(float(e["difference"])) for e in entries)
    if not runs.checkpoint(row, position=position, buckets=buckets, drift=entries, drift_value=value,
                           stripe_requests=requests, rows_read=rows_read, done=done):
        return False
    if entries:
        _publish(row.pk, entries)
        metrics.add_metric(name="UsageDriftBuckets", unit="Count", value=len(entries))
        metrics.add_metric(name="UsageDriftValue", unit="Count", value=value)
        logger.warning("usage drift found", extra={"run_id": row.pk, "drifted": len(entries),
                                                   "classifications": sorted({e["classification"] for e in entries})})
    if done:
        # Zero drift is a data point too: the alarm reads a sum that is there.
        metrics.add_metric(name="UsageDriftBuckets", unit="Count", value=0)
        logger.info("usage reconciliation done", extra={"run_id": row.pk, "buckets": int(row.buckets),
                                                        "drifted": int(row.drifted)})
    return True
