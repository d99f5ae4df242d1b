"""Stripe's side of a reconciliation: a customer's meter event summaries
per hour (GET /v1/billing/meters/{id}/event_summaries with
`value_grouping_window=hour`), one call per customer, meter and UTC day of
the window (the SDK pages), under a rate budget.

The budget is the run's own: calls are spaced at least 1/rate seconds apart
(Stripe's default limit is 25 read requests a second in live mode; the
default budget, 20, leaves room for the rest of the stack).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from billing.metering.reconciliation.window import Window
from billing.processor import get_processor
from billing.processor.base import JSONDict


@dataclass
class RateBudget:
    per_second: float
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    requests: int = 0
    _next_at: float = field(default=0.0, init=False)

    def take(self) -> None:
        """Wait for the next slot, then count the request."""
        now = self.monotonic()
        if now < self._next_at:
            self.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + 1.0 / self.per_second
        self.requests += 1


def hourly(window: Window, *, stripe_customer_id: str, event_name: str, budget: RateBudget) -> dict[int, float]:
    """Stripe's aggregated value per hour start of the window (hours it
    did not list count as 0)."""
    processor = get_processor()
    values: dict[int, float] = {}
    for start, end in window.days():
        budget.take()
        found: JSONDict = processor.meter_event_summaries(
            event_name=event_name, customer_id=stripe_customer_id, start_time=start, end_time=end,
            value_grouping_window="hour")
        for summary in found.get("data") or []:
            hour = int(summary["start_time"])
            values[hour] = values.get(hour, 0.0) + float(summary.get("aggregated_value") or 0)
    return values
