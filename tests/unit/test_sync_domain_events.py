"""The domain event bus, in-process: what a ledger row and a failed usage
event become (the samples in events/eventbridge/ through the publisher's
own code), what never goes out, PutEvents in order per subject with refused
entries, and the machine-readable schemas (schemas/events/) against the
events and against every ledger type the code can write."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev pins; a test-only use
import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from billing.sync import bus, domain_events
from billing.sync.domain_events import NEVER_PUBLISHED, DomainEvent, Unpublishable, from_ledger, from_usage
from billing.webhooks import reconcile
from billing.webhooks.thin import snapshot_type

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "events" / "billing-functions.events.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
BUS = "billing-unit-domain-events"


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / "eventbridge" / name).read_text()))


def record(name: str) -> DynamoDBRecord:
    return DynamoDBRecord(sample(name)["Records"][0])


def as_published(event: DomainEvent) -> dict[str, Any]:
    """The event as an EventBridge target receives it (the parts the schema reads)."""
    entry = bus.entry(event, BUS)
    return {"source": entry["Source"], "detail-type": entry["DetailType"], "detail": json.loads(entry["Detail"])}


def schema_errors(event: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(event)]


def deep_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in deep_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in deep_keys(v)}
    return set()


def ledger_image(type_: str, data: dict[str, Any], *, subject: str = "cust_01", row_id: str = "evt_01"
                 ) -> dict[str, Any]:
    """A ledger stream image as Powertools deserialises it (data is a JSON string column)."""
    return {"pk": f"customer#{subject}", "sk": f"2026-01-01T00:00:00.000Z#{row_id}", "id": row_id, "type": type_,
            "subject_type": "customer", "subject_id": subject, "actor_type": "api", "actor_id": None,
            "data": json.dumps(data), "inserted_at": "2026-01-01T00:00:00.000Z"}


# -- ledger rows ----------------------------------------------------------------------


def test_a_ledger_row_is_published_as_itself_with_its_type_and_id() -> None:
    image = record("ledger_stream_insert.json").dynamodb.new_image  # type: ignore[union-attr]
    event = from_ledger(image)
    assert event is not None
    assert event.detail_type == "customer.created" and event.subject == "customer#cust_01KAJ3Z6Y0SAMPLE0000000000"
    assert event.detail == {
        "id": "evt_01KAJ3Z6Y0SAMP1E0000000001", "type": "customer.created", "subject_type": "customer",
        "subject_id": "cust_01KAJ3Z6Y0SAMPLE0000000000", "actor_type": "api",
        "actor_id": "arn:aws:iam::123456789012:role/app",
        "data": {"processor_id": "cus_fake_00001", "owner_type": "User", "owner_id": "42"},
        "trace_id": None, "idempotency_key": "customer-create-0000000000000000000000000000000000000000000000",
        "caused_by_webhook_event_id": None, "inserted_at": "2025-11-21T00:00:00.120Z",
    }
    assert event.time == "2025-11-21T00:00:00.120Z"
    entry = bus.entry(event, BUS)
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == ("billing-functions", "customer.created",
                                                                              BUS)
    assert entry["Time"].isoformat() == "2025-11-21T00:00:00.120000+00:00"
    assert schema_errors(as_published(event)) == []


def test_usage_ledger_rows_are_not_published_one_by_one() -> None:
    for type_ in ("usage.accepted", "usage.failed", "usage.retry_requested"):
        assert from_ledger(ledger_image(type_, {"identifier": "u-1"})) is None


def test_a_row_without_type_or_id_cannot_be_published() -> None:
    with pytest.raises(Unpublishable):
        from_ledger(None)
    with pytest.raises(Unpublishable):
        from_ledger({**ledger_image("customer.updated", {}), "type": None})


def test_no_payload_card_or_address_key_goes_out_whatever_a_row_carries() -> None:
    leaky = {"changed_fields": ["email"], "address": {"line1": "1 Main St"}, "card": {"last4": "4242"},
             "nested": [{"billing_details": {"name": "Jenny"}, "fingerprint": "abc", "keep": 1}],
             "object": {"id": "cus_1", "object": "customer"}, "previous_attributes": {"email": "x@example.com"}}
    event = from_ledger(ledger_image("customer.updated", leaky))
    assert event is not None
    assert event.detail["data"] == {"changed_fields": ["email"], "nested": [{"keep": 1}]}
    assert not deep_keys(event.detail) & NEVER_PUBLISHED


# -- usage.failed ---------------------------------------------------------------------


def test_a_usage_event_that_ends_failed_is_published_with_its_fields() -> None:
    stream = record("meter_events_stream_failed.json").dynamodb
    assert stream is not None
    event = from_usage(stream.new_image, stream.old_image)
    assert event is not None
    assert event.detail_type == "usage.failed" and event.subject == "usage#sample-usage-0001"
    assert event.detail == {
        "id": "usage.failed:sample-usage-0001:2025-11-21T00:00:01.500Z", "type": "usage.failed",
        "identifier": "sample-usage-0001", "customer_id": "cust_01KAJ3Z6Y0SAMPLE0000000000",
        "stripe_customer_id": "cus_fake_00001", "event_name": "api_requests", "value": 3,
        "occurred_at": "2025-11-21T00:00:00.000Z",
        "stripe_error": {"type": "invalid_request_error", "code": "resource_missing",
                         "message": "No such customer: 'cus_fake_00001'"},
        "failed_at": "2025-11-21T00:00:01.500Z",
    }
    assert schema_errors(as_published(event)) == []


def test_only_the_transition_to_failed_is_published() -> None:
    stream = record("meter_events_stream_failed.json").dynamodb
    assert stream is not None
    new, old = dict(stream.new_image), dict(stream.old_image)
    assert from_usage(new, new) is None  # failed -> failed (a later write to a failed row)
    assert from_usage(old, None) is None  # an insert, pending
    assert from_usage({**new, "stripe_status": "reported"}, old) is None
    without_stamp = {k: v for k, v in new.items() if k != "failed_at"}
    fallback = from_usage(without_stamp, old)
    assert fallback is not None and fallback.detail["failed_at"] == new["updated_at"]


# -- PutEvents in order per subject ---------------------------------------------------


class ScriptedBus:
    """PutEvents that refuses the entries a test names (by detail id, once each)."""

    def __init__(self, refuse: set[str] | None = None, fail_calls: int = 0) -> None:
        self.refuse = set(refuse or ())
        self.fail_calls = fail_calls
        self.calls: list[list[str]] = []
        self.accepted: list[str] = []

    def __call__(self, entries: list[dict[str, Any]]) -> list[bool]:
        ids = [json.loads(e["Detail"])["id"] for e in entries]
        self.calls.append(ids)
        if self.fail_calls:
            self.fail_calls -= 1
            return [False] * len(entries)
        out = []
        for i in ids:
            ok = i not in self.refuse
            self.refuse.discard(i)
            if ok:
                self.accepted.append(i)
            out.append(ok)
        return out


def outgoing(*spec: tuple[str, str]) -> list[bus.Outgoing]:
    """(subject, row id) pairs, in stream order; the record id is the row id."""
    return [bus.Outgoing(row_id, DomainEvent(subject, "customer.updated", {"id": row_id}, None))
            for subject, row_id in spec]


def test_each_subject_in_order_at_most_one_entry_per_subject_per_call() -> None:
    items = outgoing(("A", "a1"), ("B", "b1"), ("A", "a2"), ("A", "a3"), ("B", "b2"), ("C", "c1"))
    put = ScriptedBus()
    result = bus.publish(items, BUS, put)
    assert result.failed == [] and [i.record_id for i in result.published] == put.accepted
    for call in put.calls:
        subjects = [i[0] for i in call]
        assert len(subjects) == len(set(subjects)), call
    assert put.calls == [["a1", "b1", "c1"], ["a2", "b2"], ["a3"]]
    assert result.calls == 3


def test_a_refused_entry_holds_back_its_subject_and_only_its_subject() -> None:
    items = outgoing(("A", "a1"), ("B", "b1"), ("A", "a2"), ("A", "a3"), ("B", "b2"))
    put = ScriptedBus(refuse={"a2"})
    result = bus.publish(items, BUS, put)
    # a1 went out; a2 was refused, so a3 was never tried; B carried on.
    assert put.accepted == ["a1", "b1", "b2"]
    assert [i.record_id for i in result.failed] == ["a2", "a3"]
    assert all("a3" not in call for call in put.calls)


def test_a_failed_call_fails_every_subject_in_it() -> None:
    put = ScriptedBus(fail_calls=1)
    result = bus.publish(outgoing(("A", "a1"), ("B", "b1"), ("A", "a2")), BUS, put)
    assert put.accepted == [] and [i.record_id for i in result.failed] == ["a1", "b1", "a2"]


def test_calls_hold_at_most_ten_entries_and_256_kib() -> None:
    many = outgoing(*[(f"S{i}", f"s{i}") for i in range(23)])
    put = ScriptedBus()
    bus.publish(many, BUS, put)
    assert [len(c) for c in put.calls] == [10, 10, 3]
    big = [bus.Outgoing(f"r{i}", DomainEvent(f"S{i}", "customer.updated", {"id": f"r{i}", "pad": "x" * 100_000},
                                             None)) for i in range(5)]
    put = ScriptedBus()
    bus.publish(big, BUS, put)
    assert [len(c) for c in put.calls] == [2, 2, 1]


def test_a_stream_retry_after_a_refusal_puts_the_subject_in_order() -> None:
    """Lambda retries from the lowest failed record: emulate it and check what
    a consumer that deduplicates by id sees per subject."""
    items = outgoing(("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2"), ("A", "a3"), ("B", "b3"))
    put = ScriptedBus(refuse={"a2", "b3"})
    batch = list(items)
    for _ in range(3):
        result = bus.publish(batch, BUS, put)
        if not result.failed:
            break
        lowest = min(items.index(i) for i in result.failed)
        batch = items[lowest:]
    seen: dict[str, list[str]] = {}
    for row_id in put.accepted:
        subject = row_id[0].upper()
        if row_id not in seen.setdefault(subject, []):
            seen[subject].append(row_id)
    assert seen == {"A": ["a1", "a2", "a3"], "B": ["b1", "b2", "b3"]}


# -- the schemas ----------------------------------------------------------------------


def test_the_schema_is_valid_json_schema_and_the_consumer_sample_matches_it() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert schema_errors(sample("domain_event_subscription_created.json")) == []


def test_the_schema_refuses_what_must_never_go_out() -> None:
    event = sample("domain_event_subscription_created.json")
    event["detail"]["data"]["card"] = {"last4": "4242"}
    assert schema_errors(event)
    event = sample("domain_event_subscription_created.json")
    event["detail"]["raw"] = {"object": "subscription"}
    assert schema_errors(event)
    event = sample("domain_event_subscription_created.json")
    event["detail-type"] = "customer.subscription.exploded"
    assert schema_errors(event)


def _ledger_types_in_source() -> set[str]:
    """Every ledger type the package writes: literal `type_=` of ledger.append,
    the third argument of customers.update._change, and `{spec.kind}.*` with
    the promotions' kinds."""
    found: set[str] = set()
    kinds: set[str] = set()
    for path in (ROOT / "layers" / "common" / "billing").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "kind" and isinstance(node.value, ast.Constant):
                kinds.add(str(node.value.value))
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "append":
                for kw in node.keywords:
                    if kw.arg == "type_" and isinstance(kw.value, ast.Constant):
                        found.add(str(kw.value.value))
                    if kw.arg == "type_" and isinstance(kw.value, ast.JoinedStr):
                        suffix = "".join(str(v.value) for v in kw.value.values if isinstance(v, ast.Constant))
                        found.add("{kind}" + suffix)
            if name == "_change" and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                found.add(str(node.args[2].value))
            # Subscription actions: record(..., type_="subscription.created") and
            # _change(row, operation, params, actor, "subscription.swapped", ...).
            for value in [*node.args, *(kw.value for kw in node.keywords if kw.arg == "type_")]:
                if name in ("record", "_change") and isinstance(value, ast.Constant) and isinstance(value.value, str) \
                        and re.fullmatch(r"subscription\.[a-z_]+", value.value):
                    found.add(value.value)
    templated = {t for t in found if t.startswith("{kind}")}
    assert templated and kinds, "the scan no longer finds the promotions' templated ledger types"
    return (found - templated) | {t.replace("{kind}", k) for t in templated for k in kinds}


def test_every_ledger_type_the_code_writes_has_a_schema() -> None:
    detail_types = set(SCHEMA["properties"]["detail-type"]["enum"])
    handled = set(reconcile.handlers()) - {t for t in reconcile.handlers() if t.startswith("v1.")}
    written = _ledger_types_in_source() | handled
    published = {t for t in written if not t.startswith(domain_events.USAGE_PREFIX)}
    assert "customer.tax_location_updated" in published and "coupon.create_confirmed" in published
    assert published - detail_types == set()
    assert detail_types - published == {"usage.failed"}
    for detail_type in detail_types:
        assert detail_type in SCHEMA["$defs"], detail_type


def test_thin_types_map_to_the_snapshot_types_they_stand_for() -> None:
    assert snapshot_type("v1.customer.updated") == "customer.updated"
    assert snapshot_type("v1.customer.subscription.created") == "customer.subscription.created"
    assert snapshot_type("v2.core.account.updated") == "v2.core.account.updated"
