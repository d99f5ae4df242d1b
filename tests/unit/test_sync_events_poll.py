"""The events poll in-process (moto, the Fake's event log as Stripe's Events
API): it stores through the webhook's once-only put what no webhook
brought, oldest first from its cursor, leaves young events to their
webhooks, skips what is stored already, and an event delivered both ways
is applied once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from billing.core import settings
from billing.customers import records
from billing.data.reads import find
from billing.data.sync_tables import EventsPollRow
from billing.data.tables import LedgerRow, WebhookEventRow
from billing.processor import set_processor
from billing.sync import events_poll
from billing.webhooks import reconcile, store
from devstack.fake_stripe import FakeProcessor
from tests.unit.webhook_delivery import Deliverer


class Clock:
    """The Fake's clock: what its events say as `created`."""

    def __init__(self) -> None:
        self.offset = -600.0  # ten minutes ago: old enough for the poll

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stripe(aws: None, clock: Clock) -> Iterator[FakeProcessor]:
    processor = FakeProcessor(clock=clock)
    set_processor(processor)
    yield processor
    set_processor(None)


@pytest.fixture
def min_age(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EVENTS_POLL_MIN_AGE_SECONDS", "60")
    monkeypatch.setenv("EVENTS_POLL_MAX_PAGES", "3")
    settings.load.cache_clear()
    yield
    settings.load.cache_clear()


def _process_stored() -> dict[str, str | None]:
    """What the stream does with rows the poll stored: process each once."""
    return {row.pk: reconcile.process(row.pk, 0) for row in WebhookEventRow.scan()
            if row.status == store.RECEIVED}


def _cursor() -> EventsPollRow:
    row = find(EventsPollRow, events_poll.CURSOR_KEY)
    assert row is not None
    return row


def _customer(fake: FakeProcessor, n: int) -> dict[str, Any]:
    return fake.create_customer(idempotency_key=f"k{n}", email=f"p{n}@example.com", name=None, metadata={})


def test_the_first_run_starts_at_the_newest_event_then_reads_forward(stripe: FakeProcessor, min_age: None) -> None:
    first = events_poll.poll()  # the seeded catalog's events: the cursor starts at the newest
    newest = stripe.list_objects("event", limit=1)["data"][0]
    assert first["cursor"] == newest["id"] and first["caught_up"] and first["stored"] == 1
    made = [_customer(stripe, n) for n in range(3)]
    second = events_poll.poll()
    assert second == {"stored": 3, "seen": 3, "cursor": stripe.list_objects("event", limit=1)["data"][0]["id"],
                      "caught_up": True, "behind_seconds": 0}
    stored = {row.pk: row for row in WebhookEventRow.scan()}
    assert {row.received_via for row in stored.values()} == {"poll"}
    assert sorted(row.object_id for row in stored.values() if row.type == "customer.created") == sorted(
        c["id"] for c in made)
    outcomes = _process_stored()
    assert set(outcomes.values()) == {"processed"}
    assert all(records.find_by_processor_id(c["id"]) is not None for c in made)  # applied like webhooks
    assert events_poll.poll()["stored"] == 0  # nothing new


def test_an_event_a_webhook_brought_is_not_stored_again_and_is_applied_once(stripe: FakeProcessor,
                                                                            min_age: None) -> None:
    events_poll.poll()
    customer = _customer(stripe, 1)
    stripe.dashboard_update("customer", customer["id"], {"name": "Renamed"})
    hooks = Deliverer(stripe)
    hooks.position = stripe.event_count() - 1  # only the rename came by webhook; customer.created never did
    (rename_id, outcome), = hooks.deliver().items()
    assert outcome == "processed"  # an update of an unknown customer records it
    ran = events_poll.poll()
    assert ran["stored"] == 1 and ran["seen"] == 2  # customer.created stored; the rename was there already
    via: dict[str, tuple[str, str | None]] = {row.pk: (str(row.type), row.received_via)
                                              for row in WebhookEventRow.scan() if row.object_id == customer["id"]}
    assert via[rename_id] == ("customer.updated", None)  # as the webhook stored it, not stored again
    assert sorted(via.values(), key=str) == [("customer.created", "poll"), ("customer.updated", None)]
    assert set(_process_stored().values()) == {"processed"}
    row = records.find_by_processor_id(customer["id"])
    assert row is not None and row.name == "Renamed"
    # Each event applied once: the rename made the row (its ledger row names no event, the
    # user path's shape), the late customer.created moved the watermark and changed nothing.
    rows = list(LedgerRow.query(f"customer#{row.pk}"))
    by_event = [r.data.get("stripe_event_id") for r in rows if r.data.get("stripe_event_id")]
    assert len(rows) == 2 and len(by_event) == len(set(by_event)) == 1
    assert all(r.data.get("changed_fields", []) == [] for r in rows if r.data.get("stripe_event_id"))
    assert events_poll.poll()["stored"] == 0


def test_young_events_are_left_to_their_webhooks(stripe: FakeProcessor, clock: Clock, min_age: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    events_poll.poll()
    old = _customer(stripe, 1)
    clock.offset = 0  # now: younger than the minimum age
    young = _customer(stripe, 2)
    ran = events_poll.poll()
    assert ran["stored"] == 1 and ran["caught_up"]
    assert {r.object_id for r in WebhookEventRow.scan() if r.type == "customer.created"} == {old["id"]}
    assert _cursor().cursor_id != stripe.list_objects("event", limit=1)["data"][0]["id"]
    monkeypatch.setenv("EVENTS_POLL_MIN_AGE_SECONDS", "0")
    settings.load.cache_clear()
    later = events_poll.poll()  # once old enough (here: no minimum), it is read: the cursor had stopped before it
    assert later["stored"] == 1
    assert {r.object_id for r in WebhookEventRow.scan() if r.type == "customer.created"} == {old["id"], young["id"]}


def test_a_long_outage_is_caught_up_over_runs_and_reported_behind(stripe: FakeProcessor, min_age: None) -> None:
    events_poll.poll()
    made = [_customer(stripe, n) for n in range(350)]  # 3.5 pages; a run reads 3
    first = events_poll.poll()
    assert (first["stored"], first["caught_up"]) == (300, False) and first["behind_seconds"] >= 540
    assert _cursor().behind_seconds == first["behind_seconds"]
    second = events_poll.poll()
    assert (second["stored"], second["caught_up"], second["behind_seconds"]) == (50, True, 0)
    assert int(_cursor().stored_total) == 351
    assert len([r for r in WebhookEventRow.scan() if r.type == "customer.created"]) == len(made)


def test_a_cursor_stripe_no_longer_has_restarts_at_the_newest_event(stripe: FakeProcessor, min_age: None) -> None:
    EventsPollRow(pk=events_poll.CURSOR_KEY, cursor_id="evt_gone", cursor_created=int(time.time()) - 3600).save()
    ran = events_poll.poll()
    assert ran["cursor"] == stripe.list_objects("event", limit=1)["data"][0]["id"] and ran["caught_up"]
    EventsPollRow(pk="other").save()  # (a second cursor row is never read)
    row = _cursor()
    row.cursor_created = int(time.time()) - 31 * 86400  # past Stripe's 30 days
    row.save()
    assert events_poll.poll()["cursor"] == ran["cursor"]
