"""Meter event adjustments and meter event summaries in the Fake.

- cancel_meter_event: POST /v1/billing/meter_event_adjustments, `type:
  cancel` by identifier. An event Stripe received is canceled (it stays in
  the meter-events view, marked canceled, and no longer counts in the
  summaries); Stripe takes a cancel within 24 hours of receiving the event
  only. An identifier the Fake never received is recorded as a pending
  adjustment that cancels nothing (Stripe applies adjustments
  asynchronously). Canceling twice answers the same adjustment.
- meter_event_summaries: the meter of an event name (the Fake has one for
  every event name it received, as if it had been configured), then the sum
  of the customer's events of that name in [start_time, end_time) (minute
  boundaries), canceled and rejected ones left out: one
  billing.meter_event_summary, or one per `hour` or `day` of
  `value_grouping_window` (bounds aligned to it, as Stripe requires).
"""

from __future__ import annotations

from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import FakeCore

# Stripe takes a cancel within 24 hours of receiving the event.
CANCEL_WINDOW_SECONDS: Final = 24 * 3600
_GROUPING: Final = {"hour": 3600, "day": 86400}


class MeterAdjustmentsMixin(FakeCore):
    """The Processor interface's meter adjustment and summary calls."""

    def cancel_meter_event(self, *, event_name: str, identifier: str, idempotency_key: str) -> JSONDict:
        args = {"event_name": event_name, "identifier": identifier}

        def cancel() -> JSONDict:
            if not isinstance(identifier, str) or not 1 <= len(identifier) <= 100:
                raise self._error(400, "cancel.identifier must be 1 to 100 characters.", param="cancel[identifier]")
            known = self._meter_events.get(identifier)
            status = "pending"
            if known is not None:
                if known["event"]["event_name"] != event_name:
                    raise self._error(400, f"No meter event with identifier {identifier} for event name "
                                           f"{event_name}.", param="cancel[identifier]")
                if self._now() - float(known["event"]["created"]) > CANCEL_WINDOW_SECONDS:
                    raise self._error(400, "You can only cancel events within 24 hours of Stripe receiving them.",
                                      param="cancel[identifier]")
                self._meter_adjustments.setdefault(identifier, {"canceled_at": int(self._now())})
                status = "complete"
            # Shape of billing.meter_event_adjustment (Stripe API reference).
            return {"object": "billing.meter_event_adjustment", "cancel": {"identifier": identifier},
                    "event_name": event_name, "livemode": False, "status": status, "type": "cancel"}

        return self._run("cancel_meter_event", args, cancel, idempotency_key=idempotency_key)

    def meter_event_summaries(
        self, *, event_name: str, customer_id: str, start_time: int, end_time: int,
        value_grouping_window: str | None = None,
    ) -> JSONDict:
        args: JSONDict = {"event_name": event_name, "customer_id": customer_id, "start_time": start_time,
                          "end_time": end_time}
        if value_grouping_window is not None:
            args["value_grouping_window"] = value_grouping_window

        def summarize() -> JSONDict:
            for name, value in (("start_time", start_time), ("end_time", end_time)):
                if isinstance(value, bool) or not isinstance(value, int) or value % 60:
                    raise self._error(400, f"{name} must be aligned with minute boundaries.", param=name)
            if end_time <= start_time:
                raise self._error(400, "end_time must be after start_time.", param="end_time")
            width = end_time - start_time
            if value_grouping_window is not None:
                width = _GROUPING.get(str(value_grouping_window), 0)
                if not width:
                    raise self._error(400, "value_grouping_window must be one of day, hour.",
                                      param="value_grouping_window")
                if start_time % width or end_time % width:
                    raise self._error(400, f"start_time and end_time must be aligned with {value_grouping_window} "
                                           "boundaries.", param="start_time")
            meter_id = self._meters.get(event_name)
            if meter_id is None:
                raise self._error(404, f"No active meter found for event name {event_name}.",
                                  code="resource_missing", param="event_name")
            totals = dict.fromkeys(range(start_time, end_time, width), 0.0)
            for event in self._counted_meter_events():
                ts = int(event["timestamp"])
                if (event["event_name"] == event_name and event["payload"].get("stripe_customer_id") == customer_id
                        and start_time <= ts < end_time):
                    window = start_time + (ts - start_time) // width * width
                    totals[window] += float(event["payload"].get("value") or 0)
            meter = _meter(meter_id, event_name)
            # One summary per grouping window (or one for the range), as the
            # processor hands them back after paging: every window, zeros too.
            data = [{"id": self._next_id("mtrusum_fake"), "object": "billing.meter_event_summary",
                     "aggregated_value": total, "start_time": window, "end_time": min(window + width, end_time),
                     "livemode": False, "meter": meter_id} for window, total in totals.items()]
            return {"meter": meter, "data": data}

        return self._run("meter_event_summaries", args, summarize)

    def find_meter(self, event_name: str) -> JSONDict:
        def find() -> JSONDict:
            meter_id = self._meters.get(event_name)
            if meter_id is None:
                raise self._error(404, f"No active meter found for event name {event_name}.",
                                  code="resource_missing", param="event_name")
            return _meter(meter_id, event_name)

        return self._run("find_meter", {"event_name": event_name}, find)

    def _counted_meter_events(self) -> list[JSONDict]:
        """What Stripe aggregates: every event received (a resend after the
        dedupe window counts again), less the canceled and the rejected."""
        counted = [record["event"] for identifier, record in self._meter_events.items()
                   if identifier not in self._meter_adjustments and identifier not in self._meter_rejected]
        return counted + [event for event in self._meter_recounted
                          if event["identifier"] not in self._meter_rejected]

    # -- test and local-stack controls (not part of the Processor interface) --------

    @property
    def canceled_meter_events(self) -> set[str]:
        """Identifiers of the received events canceled by an adjustment."""
        with self._lock:
            return set(self._meter_adjustments)


def _meter(meter_id: str, event_name: str) -> JSONDict:
    """The Fake's billing.meter: sum of `value`, customers mapped by `stripe_customer_id`."""
    return {"id": meter_id, "object": "billing.meter", "event_name": event_name,
            "display_name": event_name, "status": "active", "livemode": False,
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "default_aggregation": {"formula": "sum"}, "value_settings": {"event_payload_key": "value"}}
