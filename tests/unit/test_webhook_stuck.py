"""Rows stuck `received` (their processor died before recording an outcome):
found through the lean by_received index, re-driven once they have waited
long enough, through the same run counter as replay; out of the index once
any outcome is written. In-process on moto."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from billing.webhooks import ingest, reconcile, store
from devstack.fake_stripe import FakeProcessor

pytestmark = pytest.mark.unit


def stored(event_id: str) -> None:
    raw = json.dumps({"id": event_id, "type": "ping.unknown", "created": int(time.time())})
    assert ingest.store(ingest.Delivery(event_id, "ping.unknown", int(time.time()), False, None, raw))


def received() -> list[str]:
    data, _ = store.list_by_status(store.RECEIVED, limit=100, cursor=None)
    return [e["id"] for e in data]


def test_only_rows_received_long_enough_are_redriven(measured: dict[str, Any]) -> None:
    stored("evt_stuck_1")
    stored("evt_stuck_2")
    assert reconcile.process("evt_stuck_2", 0) == store.IGNORED  # has its outcome
    assert received() == ["evt_stuck_1"]
    assert store.redrive_stuck(3600) == 0  # not stuck yet
    time.sleep(0.01)
    assert store.redrive_stuck(0) == 1
    row = store.load("evt_stuck_1")
    assert row is not None and (row.status, int(row.run), row.run_reason) == (store.RECEIVED, 1, "redrive")
    assert [float(v) for v in measured["WebhooksRedriven"]["Value"]] == [1.0]
    # The stream record of the dead run does nothing; the re-drive's runs.
    assert not store.should_run(row, 0) and store.should_run(row, 1)
    assert reconcile.process("evt_stuck_1", 1) == store.IGNORED
    assert received() == []
    assert store.redrive_stuck(0) == 0


def test_a_replay_waits_in_the_index_until_its_outcome(fake: FakeProcessor) -> None:
    stored("evt_stuck_3")
    assert reconcile.process("evt_stuck_3", 0) == store.IGNORED
    store.replay("evt_stuck_3")
    assert "evt_stuck_3" in received()
    listed = store.list_by_status(store.RECEIVED, limit=100, cursor=None)[0]
    assert {e["id"]: e["replays"] for e in listed}["evt_stuck_3"] == 1  # served from the index's projection
    assert reconcile.process("evt_stuck_3", 1) == store.IGNORED
    assert "evt_stuck_3" not in received()


def test_received_rows_spread_over_lanes_and_list_whole_across_pages(fake: FakeProcessor) -> None:
    ids = [f"evt_lane_{n:03d}" for n in range(40)]
    for event_id in ids:
        stored(event_id)
    keys = {str(store.load(event_id).received_key) for event_id in ids}  # type: ignore[union-attr]
    # A burst of deliveries lands on many index keys, none on a bare "received".
    assert len(keys) >= 8 and all(k.startswith("received#") for k in keys)
    listed: list[str] = []
    cursor: str | None = None
    while True:
        data, cursor = store.list_by_status(store.RECEIVED, limit=7, cursor=cursor)
        listed += [e["id"] for e in data]
        if cursor is None:
            break
    assert sorted(listed) == ids and len(listed) == len(set(listed))
    time.sleep(0.01)
    assert store.redrive_stuck(0) == len(ids)  # every lane is walked
