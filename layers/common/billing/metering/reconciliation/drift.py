"""The comparison of one bucket (customer, meter, hour) and why it differs.

difference = Stripe's value - our reported value. Pending rows are not yet
in Stripe's figure, failed rows never will be, canceled rows no longer are:
none of them is part of what Stripe should hold. Classification, first
match wins:

- late: the hour closed less than the settle delay ago (Stripe aggregates
  asynchronously): look again later.
- pending (Stripe counts more, by no more than the hour's pending rows):
  Stripe took an event whose answer we lost or whose sender crashed; its
  delivery will mark it reported. Nothing to repair.
- cancel_pending (Stripe counts more, by no more than the hour's canceled
  rows, the newest cancel younger than the settle delay): Stripe applies
  meter event adjustments asynchronously.
- overcount (Stripe counts more, nothing here says why): a resend after
  Stripe's ~24 h dedupe window, or usage sent by something else.
- rejected_unsampled (Stripe counts less): Stripe rejected events its error
  report did not name (it samples), so the rows still say reported.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

from billing.core import clock
from billing.metering.outbox import CANCELED, FAILED, PENDING, REPORTED
from billing.metering.reconciliation.tally import Bucket
from billing.metering.reconciliation.window import HOUR

LATE: Final = "late"
PENDING_CLASS: Final = "pending"
CANCEL_PENDING: Final = "cancel_pending"
OVERCOUNT: Final = "overcount"
REJECTED_UNSAMPLED: Final = "rejected_unsampled"
CLASSIFICATIONS: Final = (REJECTED_UNSAMPLED, PENDING_CLASS, CANCEL_PENDING, OVERCOUNT, LATE)


def classify(values: dict[str, int], stripe: float, *, hour: int, now: float, settle_seconds: int,
             last_canceled: float | None = None) -> str | None:
    """None when Stripe holds exactly what we reported. A difference larger
    than what pending or canceled rows could explain is an overcount: the
    bucket's net figure is all Stripe gives, so it is never explained away."""
    difference = stripe - values[REPORTED]
    if difference == 0:
        return None
    if now < hour + HOUR + settle_seconds:
        return LATE
    if difference > 0:
        if difference <= values[PENDING]:
            return PENDING_CLASS
        if difference <= values[CANCELED] and last_canceled is not None and now - last_canceled < settle_seconds:
            return CANCEL_PENDING
        return OVERCOUNT
    return REJECTED_UNSAMPLED


def bucket_id(customer_id: str, event_name: str, hour: int) -> str:
    """Short, stable and safe in a meter event identifier: `<hour>-<hash>`."""
    digest = hashlib.sha256(f"{customer_id}|{event_name}".encode()).hexdigest()[:12]
    return f"{hour}-{digest}"


def _iso(unix: int) -> str:
    return clock.iso(datetime.fromtimestamp(unix, UTC))


def entry(customer_id: str, event_name: str, hour: int, bucket: Bucket, stripe: float,
          classification: str) -> dict[str, Any]:
    """The drift entry as GET /v1/usage/reconciliations/{id} lists it."""
    value = int(stripe) if float(stripe).is_integer() else stripe
    return {
        "bucket": bucket_id(customer_id, event_name, hour),
        "customer_id": customer_id, "stripe_customer_id": bucket.stripe_customer_id, "event_name": event_name,
        "start": _iso(hour), "end": _iso(hour + HOUR),
        "local": {name: bucket.values[name] for name in (REPORTED, PENDING, FAILED, CANCELED)},
        "stripe": value, "difference": value - bucket.values[REPORTED],
        "classification": classification, "identifiers": list(bucket.identifiers),
    }
