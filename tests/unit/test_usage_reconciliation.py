"""Usage reconciliation (issue 20, DESIGN.md section 10) in-process, on
moto with the Fake: the window's rules, the drift of each classification
from the rows and Stripe's hourly summaries, the checkpoint and resume,
and repair's dry run and apply."""

from __future__ import annotations

import time
from typing import Any

import pytest

from billing.core.errors import NotFound, ValidationFailed
from billing.customers import create
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.metering import intake
from billing.metering.intake import UsageInput
from billing.metering.reconciliation import drift, repair, runs, worker
from billing.metering.reconciliation.window import HOUR, check
from devstack.fake_stripe import FakeProcessor
from tests.unit.test_usage_domain import report

API = Actor("api", "arn:aws:iam::123456789012:user/test")
NOW = time.time()
HOUR_START = int(NOW) // HOUR * HOUR - 3 * HOUR  # closed 2 hours ago: past the 1 h settle delay
POLICY = worker.Policy(settle_seconds=3600, requests_per_second=1000)


@pytest.fixture
def customer(fake: FakeProcessor) -> dict[str, Any]:
    found, _ = create.fetch_or_create("User", f"recon-{time.monotonic_ns()}", CustomerAttrs(), API)
    return found


def accept(customer: dict[str, Any], identifier: str, value: int, at: int = HOUR_START + 600,
           event_name: str = "api_requests") -> str:
    intake.accept(identifier, UsageInput(event_name=event_name, value=value, customer_id=customer["id"],
                                         timestamp=at), API)
    return identifier


def run(**scope: Any) -> dict[str, Any]:
    started, new = runs.start(API, start=scope.pop("start", HOUR_START), end=scope.pop("end", HOUR_START + HOUR),
                              **scope)
    assert new and started["status"] == "running"
    assert worker.advance(started["id"], policy=POLICY) == "done"
    return runs.get(started["id"])


def test_windows_must_be_closed_aligned_hours_within_35_days_and_31_days_long() -> None:
    hour = int(NOW) // HOUR * HOUR
    assert check(hour - HOUR, hour, now=NOW).start == hour - HOUR
    for start, end, field in ((hour - HOUR + 60, hour, "start"), (hour - HOUR, hour + HOUR, "end"),
                              (hour - 36 * 86400, hour - 35 * 86400, "start"), (hour, hour - HOUR, "end"),
                              (hour - 33 * 86400, hour, "end"), ("1", hour, "start"), (True, hour, "start")):
        with pytest.raises(ValidationFailed) as refused:
            check(start, end, now=NOW)
        assert field in refused.value.details["fields"], (start, end, refused.value.details)


def test_unknown_customers_and_meters_start_nothing(fake: FakeProcessor, customer: dict[str, Any]) -> None:
    with pytest.raises(NotFound):
        runs.start(API, start=HOUR_START, end=HOUR_START + HOUR, customer_id="cus_nope")
    with pytest.raises(NotFound):
        runs.start(API, start=HOUR_START, end=HOUR_START + HOUR, event_name="no_such_meter")
    assert runs.list_runs(limit=10, cursor=None) == ([], None)


def test_a_silent_rejection_is_rejected_unsampled_and_a_sampled_one_no_drift(
        fake: FakeProcessor, customer: dict[str, Any]) -> None:
    ids = [accept(customer, f"rj-{n}-{time.monotonic_ns()}", n + 1) for n in range(4)]
    report(*ids)
    fake.raise_meter_error(ids[:2], sampled=0)  # Stripe stops counting 1 + 2, names neither
    result = run()
    assert (result["status"], result["buckets"], result["drifted"]) == ("done", 1, 1)
    (entry,) = result["drift"]
    assert entry["classification"] == "rejected_unsampled"
    assert (entry["local"]["reported"], entry["stripe"], entry["difference"]) == (10, 7, -3)
    assert entry["customer_id"] == customer["id"] and set(entry["identifiers"]) == set(ids)
    assert entry["bucket"] == drift.bucket_id(customer["id"], "api_requests", HOUR_START)


def test_classifications_of_stripe_counting_more(fake: FakeProcessor, customer: dict[str, Any]) -> None:
    # Stripe took an event whose answer was lost: the row is still pending.
    lost = accept(customer, f"lost-{time.monotonic_ns()}", 5)
    fake.create_meter_event(event_name="api_requests", identifier=lost, timestamp=HOUR_START + 600,
                            payload={"stripe_customer_id": customer["processor_id"], "value": "5"})
    # Someone else sent usage for this customer in the next hour.
    fake.create_meter_event(event_name="api_requests", identifier=f"other-{time.monotonic_ns()}",
                            timestamp=HOUR_START + HOUR + 60,
                            payload={"stripe_customer_id": customer["processor_id"], "value": "2"})
    accept(customer, f"next-{time.monotonic_ns()}", 1, at=HOUR_START + HOUR + 30)  # pending, not in Stripe
    result = run(end=HOUR_START + 2 * HOUR)
    found = {e["start"][11:13]: e for e in result["drift"]}
    # The second hour's pending row (1) cannot explain Stripe's excess (2): an overcount.
    assert [e["classification"] for e in result["drift"]] == ["pending", "overcount"], found
    result = run(end=HOUR_START + 2 * HOUR, customer_id=customer["id"], event_name="api_requests")
    assert result["drifted"] == 2


def test_a_run_that_stops_after_each_checkpoint_reports_what_an_uninterrupted_one_does(
        fake: FakeProcessor) -> None:
    customers_ = [create.fetch_or_create("User", f"rs-{n}-{time.monotonic_ns()}", CustomerAttrs(), API)[0]
                  for n in range(5)]
    for n, c in enumerate(customers_):
        ids = [accept(c, f"rs-{n}-{k}-{time.monotonic_ns()}", k + 1) for k in range(2)]
        report(*ids)
        if n % 2 == 0:
            fake.raise_meter_error(ids[:1], sampled=0)
    whole = run()
    started, _ = runs.start(API, start=HOUR_START, end=HOUR_START + HOUR)
    small = worker.Policy(settle_seconds=3600, requests_per_second=1000, checkpoint_pairs=1)
    outcomes = []  # each invocation is nearly out of time after its first pair: it checkpoints and stops
    while (outcome := worker.advance(started["id"], policy=small, remaining_ms=lambda: 1_000)) != "done":
        outcomes.append(outcome)
        assert outcome == "checkpointed"
    resumed = runs.get(started["id"])
    assert len(outcomes) == 4 and resumed["checkpoints"] == 5
    # rows_read differs: each invocation reads our side of the window again (a cost, not a finding).
    drop = ("id", "next_cursor", "started_at", "updated_at", "finished_at", "checkpoints", "rows_read")
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    assert whole["drifted"] == 3


def test_repair_says_then_sends_exactly_the_missing_value_once_and_the_next_run_shows_no_drift(
        fake: FakeProcessor, customer: dict[str, Any]) -> None:
    ids = [accept(customer, f"rp-{n}-{time.monotonic_ns()}", n + 2) for n in range(3)]
    report(*ids)
    fake.raise_meter_error(ids[1:], sampled=1)  # 3 + 4 rejected, only the first named
    result = run()
    (entry,) = result["drift"]
    assert (entry["classification"], entry["difference"]) == ("rejected_unsampled", -7)
    before = len(fake.meter_events)
    dry = repair.repair(result["id"], API)
    (planned,) = dry["actions"]
    assert (planned["action"], planned["status"], planned["value"]) == ("send", "planned", 7)
    assert planned["identifiers"] == [f"repair:{entry['bucket']}:1"]
    assert HOUR_START <= planned["timestamp"] < HOUR_START + HOUR
    assert len(fake.meter_events) == before  # a dry run sends nothing
    applied = repair.repair(result["id"], API, apply=True)
    assert applied["sent"] == 1 and applied["actions"][0]["status"] == "sent"
    sent = [e for e in fake.meter_events if e["identifier"].startswith("repair:")]
    assert [(e["identifier"], e["payload"]["value"], e["timestamp"]) for e in sent] == [
        (planned["identifiers"][0], "7", planned["timestamp"])]
    again = repair.repair(result["id"], API, apply=True)
    assert again["sent"] == 0 and again["actions"][0]["status"] == "already_applied"
    assert len(fake.meter_events) == before + 1 and not fake.meter_event_duplicates
    assert run()["drifted"] == 0
    assert runs.get(result["id"])["repaired_by"] == API.id


def test_repair_cancels_its_own_excess_and_flags_what_it_cannot_name(
        fake: FakeProcessor, customer: dict[str, Any]) -> None:
    ids = [accept(customer, f"oc-{n}-{time.monotonic_ns()}", 4) for n in range(2)]
    report(*ids)
    fake.raise_meter_error(ids[:1], sampled=0)
    first = run()
    repair.repair(first["id"], API, apply=True)  # sends 4 under repair:<bucket>:1
    # The rejected event is counted after all (Stripe reversed itself): now
    # Stripe holds 4 too many, made by our own repair event: it is canceled.
    fake._meter_rejected.discard(ids[0])
    second = run()
    (entry,) = second["drift"]
    assert (entry["classification"], entry["difference"]) == ("overcount", 4)
    (action,) = repair.repair(second["id"], API, apply=True)["actions"]
    assert (action["action"], action["status"], action["identifiers"]) == (
        "cancel", "sent", [f"repair:{entry['bucket']}:1"])
    assert run()["drifted"] == 0
    # Usage sent by something else: nothing here names it, so a person decides.
    fake.create_meter_event(event_name="api_requests", identifier=f"else-{time.monotonic_ns()}",
                            timestamp=HOUR_START + 60, payload={"stripe_customer_id": customer["processor_id"],
                                                                "value": "9"})
    third = run()
    (flagged,) = repair.repair(third["id"], API, apply=True)["actions"]
    assert (flagged["action"], third["drift"][0]["difference"]) == ("flag", 9)
    assert "something else" in flagged["reason"]


def test_a_repair_stripe_refused_is_sent_again_under_the_same_identifier_by_the_next_apply(
        fake: FakeProcessor, customer: dict[str, Any]) -> None:
    ids = [accept(customer, f"rf-{n}-{time.monotonic_ns()}", 3) for n in range(2)]
    report(*ids)
    fake.raise_meter_error(ids[:1], sampled=0)
    result = run()
    fake.add_fault("create_meter_event", 503)
    (failed,) = repair.repair(result["id"], API, apply=True)["actions"]
    assert (failed["status"], failed["error"]["type"]) == ("failed", "api_error")
    (sent,) = repair.repair(result["id"], API, apply=True)["actions"]
    assert (sent["status"], sent["identifiers"]) == ("sent", failed["identifiers"])
    assert run()["drifted"] == 0
