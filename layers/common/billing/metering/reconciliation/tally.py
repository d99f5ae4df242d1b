"""Our side of a reconciliation: the usage rows whose event time falls in
the window, summed per customer, meter and hour by status.

Read, never counted on write (DESIGN.md section 7: no write per usage event
for reconciliation): the rows are found through `by_accepted` (lane,
inserted_at), the only index every row is in. A row's event time is at
most 35 days before its acceptance and at most 5 minutes after it, so a
row of the window was accepted in [start - 5 min, end + 35 days): each lane
is queried over that range (up to now), filtered on the projected customer
and event name when the run names them, and the entries' rows are read in
batches (eventually consistent: the run compares settled hours) for their
event time, value and status.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from pynamodb.expressions.condition import Condition

from billing.core import clock
from billing.data.usage_tables import MeterEventRow
from billing.metering.outbox import (
    CANCELED,
    FAILED,
    FUTURE_WINDOW_SECONDS,
    PAST_WINDOW_SECONDS,
    PENDING,
    REPORTED,
    all_lanes,
)
from billing.metering.reconciliation.window import HOUR, Window

BATCH_GET: Final = 100
PAGE_ENTRIES: Final = 1000
# Identifiers a drift entry names per bucket at most (the count is always whole).
MAX_IDENTIFIERS: Final = 20
STATUSES: Final = (REPORTED, PENDING, FAILED, CANCELED)

Pair = tuple[str, str]  # (customer_id, event_name)


def sent_as(row: MeterEventRow) -> str:
    """The identifier Stripe knows the row by. One place to read it: a row
    resent after a meter error records the new one on the row."""
    return str(row.stripe_identifier or row.pk)


@dataclass
class Bucket:
    """One customer's usage of one meter in one hour, by status."""

    stripe_customer_id: str
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    rows: int = 0
    identifiers: list[str] = field(default_factory=list)
    last_canceled_at: str | None = None  # the newest cancel of the hour (ISO 8601)

    def add(self, row: MeterEventRow) -> None:
        status = row.stripe_status if row.stripe_status in self.values else PENDING
        self.values[status] += int(row.value)
        if status == CANCELED and row.canceled_at and row.canceled_at > (self.last_canceled_at or ""):
            self.last_canceled_at = row.canceled_at
        self.rows += 1
        if len(self.identifiers) < MAX_IDENTIFIERS:
            self.identifiers.append(sent_as(row))


@dataclass
class Tally:
    """Buckets per pair (customer_id, event_name) and hour start."""

    pairs: dict[Pair, dict[int, Bucket]] = field(default_factory=dict)
    # Pairs named by the run with no usage here: their Stripe customer.
    stripe_ids: dict[Pair, str] = field(default_factory=dict)
    rows_read: int = 0  # index entries and rows read, for the run's cost figures

    def ordered_pairs(self) -> list[Pair]:
        return sorted(self.pairs)


def _iso(unix: float) -> str:
    return clock.iso(datetime.fromtimestamp(unix, UTC))


def _entries(lane: str, low: str, high: str, filters: Condition | None) -> Iterator[MeterEventRow]:
    yield from MeterEventRow.by_accepted.query(
        lane, MeterEventRow.inserted_at.between(low, high), filter_condition=filters, page_size=PAGE_ENTRIES)


def tally(window: Window, *, now: float, customer_id: str | None = None, event_name: str | None = None) -> Tally:
    low = _iso(window.start - FUTURE_WINDOW_SECONDS)
    high = _iso(min(now, window.end + PAST_WINDOW_SECONDS))
    filters: Condition | None = None
    if customer_id is not None:
        filters = MeterEventRow.customer_id == customer_id
    if event_name is not None:
        by_name = MeterEventRow.event_name == event_name
        filters = by_name if filters is None else filters & by_name
    result = Tally()
    keys: list[str] = []
    for lane in all_lanes():
        for entry in _entries(lane, low, high, filters):
            result.rows_read += 1
            keys.append(entry.pk)
    for begin in range(0, len(keys), BATCH_GET):
        for row in MeterEventRow.batch_get(keys[begin:begin + BATCH_GET]):
            result.rows_read += 1
            ts = int(row.occurred_ts)
            if not window.start <= ts < window.end:
                continue
            hour = ts - ts % HOUR
            buckets = result.pairs.setdefault((row.customer_id, row.event_name), {})
            bucket = buckets.get(hour)
            if bucket is None:
                bucket = buckets[hour] = Bucket(stripe_customer_id=row.stripe_customer_id)
            bucket.add(row)
    return result
