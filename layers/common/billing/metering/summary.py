"""GET /v1/customers/{id}/usage-summary: what Stripe counted for one
customer and meter over a period (its meter event summaries), beside what
is still here: the customer's events of that name in the period that are
pending (not yet in Stripe's figure) or failed (never to be).

Stripe aggregates by the events' own timestamps, start inclusive and end
exclusive, on minute boundaries; the local counts use the same window on
the rows' occurred_at. The local side is read from the indexes: pending
rows from by_accepted after the sweeper's positions (the only place rows
can be pending unflagged) and from by_status (flagged), failed rows from
by_status; each filtered by customer and event name on the projected
attributes, the rows then read for their time and value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from billing.core import clock
from billing.core.errors import NotFound, ValidationFailed
from billing.customers import records as customers
from billing.data.usage_tables import MeterEventRow
from billing.metering import lanes, sweeper
from billing.metering.outbox import FAILED, PENDING, STATUS_SHARDS
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

MINUTE: Final = 60
# Rows read per request for the pending walk at most (the summary says when it stopped short).
PENDING_BUDGET: Final = 20_000


def parse_time(raw: str, name: str) -> int:
    """Unix seconds or ISO 8601 with an offset, on a minute boundary (Stripe's rule)."""
    text = raw.strip()
    if text.isdigit():
        value = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
        except ValueError:
            raise ValidationFailed(f"{name} must be unix seconds or ISO 8601", {name: "not a time"}) from None
        if moment.tzinfo is None:
            raise ValidationFailed(f"{name} needs a UTC offset (e.g. Z)", {name: "no offset"})
        value = int(moment.timestamp())
        if moment.timestamp() != value:
            raise ValidationFailed(f"{name} must be on a minute boundary", {name: "not on a minute"})
    if value % MINUTE:
        raise ValidationFailed(f"{name} must be on a minute boundary", {name: "not on a minute"})
    return value


def _count(rows: list[MeterEventRow], status: str, start: int, end: int) -> dict[str, int]:
    mine = [r for r in rows if r.stripe_status == status and start <= int(r.occurred_ts) < end]
    return {"count": len(mine), "value": sum(int(r.value) for r in mine)}


def _flagged_rows(status: str, customer_id: str, event_name: str) -> list[MeterEventRow]:
    filters = (MeterEventRow.customer_id == customer_id) & (MeterEventRow.event_name == event_name)
    keys = [entry.pk for n in range(STATUS_SHARDS)
            for entry in MeterEventRow.by_status.query(f"{status}#{n}", filter_condition=filters)]
    found: list[MeterEventRow] = []
    for start in range(0, len(keys), 100):
        found.extend(MeterEventRow.batch_get(keys[start:start + 100]))
    return found


def local_counts(customer_id: str, event_name: str, start: int, end: int) -> dict[str, Any]:
    filters = (MeterEventRow.customer_id == customer_id) & (MeterEventRow.event_name == event_name)
    fresh, positions = lanes.walk(
        lanes.top(), limit=PENDING_BUDGET, floors=sweeper.fresh_since(), filters=filters, budget=PENDING_BUDGET,
        keep=lambda row: row.stripe_status == PENDING and not row.status_key)
    pending = _count(fresh + _flagged_rows(PENDING, customer_id, event_name), PENDING, start, end)
    failed = _count(_flagged_rows(FAILED, customer_id, event_name), FAILED, start, end)
    return {"pending": pending, "failed": failed, "complete": positions is None}


def usage_summary(customer_id: str, *, event_name: str, start: int, end: int) -> dict[str, Any]:
    if end <= start:
        raise ValidationFailed("end must be after start", {"end": "not after start"})
    customer = customers.load(customer_id)
    if customer.deleted_at or not customer.processor_id:
        raise NotFound(f"customer {customer_id} has no Stripe customer")
    try:
        stripe = get_processor().meter_event_summaries(event_name=event_name, customer_id=customer.processor_id,
                                                       start_time=start, end_time=end)
    except ProcessorFailure as failure:
        raise_for_processor(failure)
    summaries = [{"start": clock.iso(datetime.fromtimestamp(int(s["start_time"]), UTC)),
                  "end": clock.iso(datetime.fromtimestamp(int(s["end_time"]), UTC)),
                  "aggregated_value": float(s["aggregated_value"])} for s in stripe.get("data") or []]
    return {
        "customer_id": customer_id, "stripe_customer_id": customer.processor_id, "event_name": event_name,
        "start": clock.iso(datetime.fromtimestamp(start, UTC)), "end": clock.iso(datetime.fromtimestamp(end, UTC)),
        "stripe": {"meter_id": str((stripe.get("meter") or {}).get("id") or ""),
                   "aggregated_value": sum(s["aggregated_value"] for s in summaries), "summaries": summaries},
        "local": local_counts(customer_id, event_name, start, end),
    }
