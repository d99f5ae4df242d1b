"""Usage (issue 12) in-process, on moto with the Fake: the batch's rules, the
sweeper's lanes and flags, the lists over by_accepted, the cancel window,
the summary's local counts, and the row's size (DESIGN.md section 7: one
write unit a write)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from billing.core import clock
from billing.core.errors import Conflict, PayloadTooLarge, ValidationFailed
from billing.customers import create
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.usage_tables import MeterEventRow
from billing.metering import batch, cancel, delivery, intake, lanes, outbox, queries, summary, sweeper
from billing.metering.delivery import DeliveryPolicy, Pending
from billing.metering.intake import UsageInput
from devstack.fake_stripe import FakeProcessor

API = Actor("api", "arn:aws:iam::123456789012:user/test")


@pytest.fixture
def customer(fake: FakeProcessor) -> dict[str, Any]:
    found, _ = create.fetch_or_create("User", f"domain-{time.monotonic_ns()}", CustomerAttrs(), API)
    return found


def usage(customer: dict[str, Any], value: int = 1, **extra: Any) -> UsageInput:
    return UsageInput(event_name=extra.pop("event_name", "api_requests"), value=value, customer_id=customer["id"],
                      **extra)


def report(*identifiers: str) -> None:
    """Deliver these rows as the reporter would (v1)."""
    rows = [MeterEventRow.get(i, consistent_read=True) for i in identifiers]
    events = [Pending(identifier=r.pk, event_name=r.event_name, stripe_customer_id=r.stripe_customer_id,
                      value=int(r.value), timestamp=int(r.occurred_ts), inserted_at=r.inserted_at,
                      pending_since=r.pending_since or r.inserted_at) for r in rows]
    delivery.deliver(events, deadline=time.monotonic() + 30, settings=DeliveryPolicy(
        mode="v1", tries=1, backoff_base=0.001, backoff_cap=0.001, concurrency=1))


def dynamodb_size(row: MeterEventRow) -> int:
    """An item's size as DynamoDB bills it: attribute names and values, in bytes."""
    size = 0
    for name, value in row.serialize().items():
        (kind, raw), = value.items()
        size += len(name.encode()) + (len(str(raw).encode()) if kind == "S" else len(str(raw)) // 2 + 1
                                      if kind == "N" else len(str(raw)))
    return size


def test_the_row_stays_under_one_kilobyte_through_its_life(customer: dict[str, Any]) -> None:
    identifier = "i" * 100
    intake.accept(identifier, usage(customer, 2**53 - 1, event_name="e" * 100, operation_id="o" * 60), API)
    assert dynamodb_size(MeterEventRow.get(identifier)) < 1024
    report(identifier)
    reported = MeterEventRow.get(identifier)
    assert reported.stripe_status == "reported" and dynamodb_size(reported) < 1024
    assert reported.status_key is None  # the report left no index entry behind


def test_the_batch_runs_every_event_through_the_put_rules_in_order(customer: dict[str, Any]) -> None:
    intake.accept("dom-b-old", usage(customer, 2), API)
    entries = [
        batch.Entry("dom-b-new", usage(customer, 1)),
        batch.Entry("dom-b-old", usage(customer, 2)),
        batch.Entry("dom-b-old", usage(customer, 3)),
        batch.Entry("dom-b-late", usage(customer, 1, timestamp=int(time.time()) - 40 * 86400)),
        batch.Entry("dom-b-who", UsageInput(event_name="x", value=1, customer_id="cust_missing")),
        batch.Entry(None, refused=ValidationFailed("invalid event", {"errors": []})),
    ]
    results = batch.accept_all(entries, API)
    assert [(r["identifier"], r["status"]) for r in results] == [
        ("dom-b-new", 202), ("dom-b-old", 200), ("dom-b-old", 409), ("dom-b-late", 422), ("dom-b-who", 404),
        (None, 422)]
    assert results[2]["error"]["type"] == "identifier_conflict"
    assert results[3]["error"]["type"] == "timestamp_out_of_window"
    with pytest.raises(PayloadTooLarge):
        batch.accept_all([batch.Entry(f"dom-b-{n}", usage(customer)) for n in range(101)], API)
    with pytest.raises(ValidationFailed):
        batch.accept_all([], API)


def test_the_sweeper_flags_what_is_still_pending_and_moves_on(customer: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Every row in the same millisecond, and a budget of two rows a lane:
    # the position must never pass rows it did not read.
    fixed = clock.iso()
    real_iso = clock.iso
    monkeypatch.setattr(clock, "iso", lambda moment=None: fixed if moment is None else real_iso(moment))
    monkeypatch.setattr(sweeper, "SCAN_ROWS_PER_LANE", 2)
    monkeypatch.setattr(sweeper, "INDEX_LAG_SECONDS", 0.0)
    identifiers = [f"dom-sweep-{n}" for n in range(40)]
    for identifier in identifiers:
        intake.accept(identifier, usage(customer), API)
    report(*identifiers[:10])
    monkeypatch.setattr(clock, "iso", real_iso)
    time.sleep(0.01)

    flagged: set[str] = set()
    for _ in range(40):  # runs until every lane is past our rows
        sweeper.sweep(min_age_seconds=0, max_rows=500)
        flagged = {r.pk for r in MeterEventRow.batch_get(identifiers) if r.status_key}
        if flagged == set(identifiers[10:]):
            break
    assert flagged == set(identifiers[10:])  # every pending row found, none reported ones
    assert {MeterEventRow.get(i).status_key for i in identifiers[10:]} == {
        outbox.status_key("pending", i) for i in identifiers[10:]}
    assert all(int(MeterEventRow.get(i).sweeps) >= 1 for i in identifiers[10:])
    assert all(at >= fixed for at, _ in sweeper.positions().values())

    # Flagged pending rows are listed from by_status; once reported, they leave it.
    pending = {r["identifier"] for r in collect("pending")}
    assert set(identifiers[10:]) <= pending and not set(identifiers[:10]) & pending
    report(*identifiers[10:])
    assert not {r.pk for r in MeterEventRow.batch_get(identifiers) if r.status_key}
    assert not set(identifiers) & {r["identifier"] for r in collect("pending")}


def collect(status: str | None, customer_id: str | None = None, limit: int = 7) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(500):
        page, cursor = queries.list_usage(status=status, customer_id=customer_id, limit=limit, cursor=cursor)
        assert len(page) <= limit
        out.extend(page)
        if cursor is None:
            return out
    raise AssertionError("the list never ended")


def test_the_lists_read_by_accepted_newest_first_without_skipping_or_repeating(
        customer: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    identifiers = [f"dom-list-{n:02d}" for n in range(30)]
    for identifier in identifiers:
        intake.accept(identifier, usage(customer), API)
    report(*identifiers[::2])
    mine = collect(None, customer["id"])
    assert [r["identifier"] for r in mine] == identifiers[::-1]
    assert [r["identifier"] for r in collect("reported", customer["id"], limit=4)] == identifiers[::2][::-1]
    assert [r["identifier"] for r in collect("pending", customer["id"], limit=4)] == identifiers[1::2][::-1]
    # Tiny pages and a tiny read budget: short (even empty) pages, still every row once.
    monkeypatch.setattr(lanes, "PAGE_ENTRIES", 1)
    rows: list[str] = []
    cursor: str | None = None
    scope = lanes.scope_of("customer", customer_id=customer["id"], status=None)
    while True:
        page, cursor = lanes.newest_first(scope=scope, cursor=cursor, limit=5, budget=3,
                                          filters=MeterEventRow.customer_id == customer["id"], keep=lambda r: True)
        rows.extend(r.pk for r in page)
        if cursor is None:
            break
    assert rows == identifiers[::-1]
    with pytest.raises(ValidationFailed):
        queries.list_usage(status="reported", customer_id=None, limit=5, cursor=cursor or "x")


def test_a_reported_row_is_canceled_only_within_stripes_24_hours(customer: dict[str, Any],
                                                                 fake: FakeProcessor) -> None:
    intake.accept("dom-cancel-late", usage(customer), API)
    intake.accept("dom-cancel-ok", usage(customer), API)
    report("dom-cancel-late", "dom-cancel-ok")
    old = clock.iso(clock.now() - timedelta(hours=24, minutes=1))
    MeterEventRow(pk="dom-cancel-late").update(actions=[MeterEventRow.reported_at.set(old)])
    with pytest.raises(Conflict) as late:
        cancel.cancel("dom-cancel-late", API)
    assert late.value.error_type == "cancel_window_passed"
    assert cancel.cancel("dom-cancel-ok", API)["stripe_status"] == "canceled"
    assert fake.canceled_meter_events == {"dom-cancel-ok"}
    assert [c["args"]["identifier"] for c in fake.calls if c["operation"] == "cancel_meter_event"] == [
        "dom-cancel-ok"]


def test_the_summary_counts_what_stripe_has_not(customer: dict[str, Any]) -> None:
    minute = int(time.time()) // 60 * 60
    for identifier, value in (("dom-sum-1", 4), ("dom-sum-2", 6)):
        intake.accept(identifier, usage(customer, value, timestamp=minute - 60), API)
    report("dom-sum-1", "dom-sum-2")
    intake.accept("dom-sum-pending", usage(customer, 5, timestamp=minute - 60), API)
    intake.accept("dom-sum-failed", usage(customer, 3, timestamp=minute - 60), API)
    MeterEventRow(pk="dom-sum-failed").update(actions=outbox.failed_actions(
        "dom-sum-failed", outbox.safe_error("meter_error", "x", "y"), clock.iso(), count_attempt=False))
    body = summary.usage_summary(customer["id"], event_name="api_requests", start=minute - 3600, end=minute + 60)
    assert body["stripe"]["aggregated_value"] == 10.0
    assert body["local"] == {"pending": {"count": 1, "value": 5}, "failed": {"count": 1, "value": 3},
                             "complete": True}
    with pytest.raises(ValidationFailed):
        summary.parse_time(str(minute + 1), "start")
    assert summary.parse_time("2026-01-01T00:01:00Z", "start") == 1_767_225_660
