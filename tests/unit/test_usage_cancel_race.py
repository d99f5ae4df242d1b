"""A cancel racing the reporter, in-process (moto, the Fake), where the
timing can be forced: the Fake below cancels the row through the domain's
own cancel (what POST /v1/usage/{identifier}/cancel does) at the exact
moment of a delivery attempt.

- canceled before a retry: the reporter reads the row again before every
  try and does not send it: it never reaches Stripe;
- canceled while the call is on its way (the call lands), or when the call
  landed but its answer was lost: the reporter finds the row canceled and
  cancels the event at Stripe with a meter event adjustment: never billed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from billing.customers import create
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.usage_tables import MeterEventRow
from billing.metering import cancel, delivery, intake, outbox
from billing.metering.delivery import DeliveryPolicy, Pending
from billing.metering.intake import UsageInput
from billing.processor import set_processor
from billing.processor.base import JSONDict
from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe import FakeProcessor

API = Actor("api", "arn:aws:iam::123456789012:user/test")


class RacingFake(FakeProcessor):
    """The Fake, with `hook(identifiers, call)` run around each delivery call:
    it may cancel rows, forward the call (`call()`), or fail it."""

    hook: Callable[[list[str], Callable[[], Any]], Any] | None = None

    def create_meter_event(self, *, event_name: str, identifier: str, timestamp: int,
                           payload: dict[str, str]) -> JSONDict:
        def call() -> JSONDict:
            return super(RacingFake, self).create_meter_event(event_name=event_name, identifier=identifier,
                                                              timestamp=timestamp, payload=payload)

        return self.hook([identifier], call) if self.hook else call()

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        def call() -> None:
            super(RacingFake, self).send_meter_events(session_token=session_token, events=events)

        if self.hook:
            self.hook([str(e["identifier"]) for e in events], call)
        else:
            call()


@pytest.fixture
def racing(aws: None) -> Iterator[RacingFake]:
    fake = RacingFake()
    set_processor(fake)
    delivery.sessions.clear()  # a v2 session of another test's Fake means nothing to this one
    yield fake
    set_processor(None)
    delivery.sessions.clear()


def accept(fake: FakeProcessor, *identifiers: str) -> list[Pending]:
    customer, _ = create.fetch_or_create("User", f"race-{identifiers[0]}", CustomerAttrs(), API)
    out = []
    for identifier in identifiers:
        row, _ = intake.accept(identifier, UsageInput(event_name="api_requests", value=2,
                                                      customer_id=customer["id"]), API)
        out.append(Pending(identifier=identifier, event_name="api_requests",
                           stripe_customer_id=row["stripe_customer_id"], value=2,
                           timestamp=int(time.time()), inserted_at=row["inserted_at"],
                           pending_since=row["inserted_at"]))
    return out


def deliver(events: list[Pending], mode: str = "v1") -> dict[str, delivery.Outcome]:
    return delivery.deliver(events, deadline=time.monotonic() + 30, settings=DeliveryPolicy(
        mode=mode, tries=3, backoff_base=0.001, backoff_cap=0.002, concurrency=2))


def refused_for_now() -> ProcessorFailure:
    """A 429: Stripe took nothing, try again later."""
    return ProcessorFailure("Too many requests", status=429, error_type="rate_limit_error")


def lost() -> ProcessorFailure:
    """No answer: Stripe may have taken the call."""
    return ProcessorFailure("Connection reset", error_type="network")


def adjustments(fake: FakeProcessor) -> list[str]:
    return [c["args"]["identifier"] for c in fake.calls if c["operation"] == "cancel_meter_event"]


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_a_row_canceled_between_tries_is_never_sent(racing: RacingFake, mode: str) -> None:
    (event,) = accept(racing, f"race-retry-{mode}")

    def cancel_then_fail(identifiers: list[str], call: Callable[[], Any]) -> Any:
        racing.hook = None
        cancel.cancel(identifiers[0], API)  # the caller cancels while Stripe is busy
        raise refused_for_now()

    racing.hook = cancel_then_fail
    outcomes = deliver([event], mode)
    assert outcomes[event.identifier].kind == delivery.SKIPPED
    assert racing.meter_events == []  # never reached Stripe
    assert adjustments(racing) == []  # and nothing to cancel there
    assert outbox.get(event.identifier)["stripe_status"] == "canceled"


def test_only_the_canceled_event_of_a_v2_chunk_drops_out_of_the_retry(racing: RacingFake) -> None:
    kept, dropped = accept(racing, "race-chunk-kept", "race-chunk-dropped")

    def cancel_one_then_fail(identifiers: list[str], call: Callable[[], Any]) -> Any:
        racing.hook = None
        cancel.cancel(dropped.identifier, API)
        raise refused_for_now()

    racing.hook = cancel_one_then_fail
    outcomes = deliver([kept, dropped], "v2")
    assert (outcomes[kept.identifier].kind, outcomes[dropped.identifier].kind) == (delivery.REPORTED,
                                                                                   delivery.SKIPPED)
    assert [e["identifier"] for e in racing.meter_events] == [kept.identifier]
    sends = [[e["identifier"] for e in c["args"]["events"]] for c in racing.calls
             if c["operation"] == "send_meter_events"]
    assert sends[-1] == [kept.identifier]


@pytest.mark.parametrize("mode", ["v1", "v2"])
@pytest.mark.parametrize("answer_lost", [False, True])
def test_a_row_canceled_while_its_event_was_on_the_way_is_canceled_at_stripe(racing: RacingFake, mode: str,
                                                                            answer_lost: bool) -> None:
    (event,) = accept(racing, f"race-landed-{mode}-{answer_lost}")

    def land_then_cancel(identifiers: list[str], call: Callable[[], Any]) -> Any:
        racing.hook = None
        result = call()  # Stripe takes the event...
        cancel.cancel(identifiers[0], API)  # ...as the caller cancels the row
        if answer_lost:
            raise lost()  # and the answer never comes back
        return result

    racing.hook = land_then_cancel
    deliver([event], mode)
    row = MeterEventRow.get(event.identifier, consistent_read=True)
    assert row.stripe_status == "canceled" and row.reported_at is None
    assert adjustments(racing) == [event.identifier]
    assert racing.canceled_meter_events == {event.identifier}  # received, then canceled: never billed
    assert [e["canceled"] for e in racing.meter_events] == [True]
