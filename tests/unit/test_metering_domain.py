"""Usage intake in-process (moto, the Fake): the identifier is the
idempotency key, Stripe's time window holds, and a replay writes nothing."""

from __future__ import annotations

import time

import pytest

from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.customers import create
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.metering import intake, lifecycle, outbox, queries
from billing.metering.intake import UsageInput, parse_timestamp
from devstack.fake_stripe import FakeProcessor

API = Actor("api", "arn:aws:iam::123456789012:user/test")
NOW = 1_790_000_000.0


@pytest.mark.parametrize(("raw", "expected"), [
    (None, int(NOW)), (int(NOW) - 60, int(NOW) - 60), (str(int(NOW)), int(NOW)),
    ("2026-09-21T14:13:20Z", 1_790_000_000), ("2026-09-21T16:13:20+02:00", 1_790_000_000),
])
def test_timestamps_in_seconds_or_iso_8601(raw: int | str | None, expected: int) -> None:
    assert parse_timestamp(raw, NOW) == expected


@pytest.mark.parametrize(("raw", "error_type"), [
    (int(NOW) - 36 * 86400, "timestamp_out_of_window"),
    (int(NOW) + 301, "timestamp_in_future"),
    ("yesterday", "validation_error"),
    ("2026-09-21T14:13:20", "validation_error"),  # no offset: ambiguous
])
def test_timestamps_outside_stripes_window_are_refused(raw: int | str, error_type: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_timestamp(raw, NOW)
    assert refused.value.error_type == error_type


def test_accept_replay_and_conflict(fake: FakeProcessor) -> None:
    customer, _ = create.fetch_or_create("User", "m-1", CustomerAttrs(), API)
    usage = UsageInput(event_name="api_requests", value=3, customer_id=customer["id"])
    row, created = intake.accept("req-1", usage, API)
    assert created and row["stripe_status"] == "pending" and row["stripe_customer_id"] == customer["processor_id"]
    again, created_again = intake.accept("req-1", usage, API)
    assert not created_again and again == row
    with pytest.raises(Conflict) as conflict:
        intake.accept("req-1", UsageInput(event_name="api_requests", value=4, customer_id=customer["id"]), API)
    assert conflict.value.error_type == "identifier_conflict"
    assert outbox.get("req-1")["value"] == 3


def test_unknown_customers_and_bad_identifiers(fake: FakeProcessor) -> None:
    with pytest.raises(NotFound):
        intake.accept("req-2", UsageInput(event_name="x", value=1, customer_id="cust_missing"), API)
    with pytest.raises(NotFound):
        intake.accept("req-3", UsageInput(event_name="x", value=1, owner_type="User", owner_id="nobody"), API)
    with pytest.raises(ValidationFailed):
        intake.accept("bad identifier!", UsageInput(event_name="x", value=1, customer_id="c"), API)


def test_only_failed_usage_is_retried_and_lists_read_the_sparse_index(fake: FakeProcessor) -> None:
    customer, _ = create.fetch_or_create("User", "m-2", CustomerAttrs(), API)
    for n in range(3):
        intake.accept(f"req-l{n}", UsageInput(event_name="api_requests", value=1, customer_id=customer["id"],
                                              timestamp=int(time.time()) - n), API)
    with pytest.raises(Conflict):
        lifecycle.retry("req-l0", API)  # pending, not failed
    assert lifecycle.fail_from_meter_error("req-l0", "meter_event_customer_not_found", "no such customer", API)
    failed, _ = queries.list_usage(status="failed", customer_id=None, limit=10, cursor=None)
    assert [r["identifier"] for r in failed] == ["req-l0"]
    assert failed[0]["stripe_error"] == {"type": "meter_error", "code": "meter_event_customer_not_found",
                                         "message": "no such customer"}
    retried = lifecycle.retry("req-l0", API)
    assert retried["stripe_status"] == "pending" and retried["stripe_error"] is None
    pending, cursor = queries.list_usage(status="pending", customer_id=None, limit=2, cursor=None)
    rest, end = queries.list_usage(status="pending", customer_id=None, limit=2, cursor=cursor)
    assert end is None
    assert sorted(r["identifier"] for r in pending + rest) == ["req-l0", "req-l1", "req-l2"]
