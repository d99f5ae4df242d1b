"""The webhook flow's metrics, which the dashboard and the processing-lag alarm
in template.yaml read (namespace BillingFunctions, service webhook_processor):
WebhookProcessed and WebhookFailed per outcome, WebhookProcessingLag (seconds
from receipt to outcome) for a first run only. In-process: the ack path
stores a row on moto, the processor reconciles it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from billing.core.observability import metrics
from billing.webhooks import ingest, reconcile, store

pytestmark = pytest.mark.unit


def stored(event_id: str, body: Any, type_: str = "ping.unknown") -> None:
    raw = json.dumps(body)
    assert ingest.store(ingest.Delivery(event_id, type_, int(time.time()), False, None, raw))


def values(metric_set: dict[str, Any], name: str) -> list[float]:
    return [float(v) for v in metric_set[name]["Value"]] if name in metric_set else []


def test_a_first_run_counts_as_processed_and_measures_its_lag(measured: dict[str, Any]) -> None:
    stored("evt_metrics_1", {"id": "evt_metrics_1", "type": "ping.unknown", "created": int(time.time())})
    assert reconcile.process("evt_metrics_1", 0) == store.IGNORED
    assert values(measured, "WebhookProcessed") == [1.0]
    (lag,) = values(measured, "WebhookProcessingLag")
    assert 0.0 <= lag < 60.0
    assert measured["WebhookProcessingLag"]["Unit"] == "Seconds"
    assert values(measured, "WebhookFailed") == []


def test_a_replay_counts_but_its_age_is_not_lag(measured: dict[str, Any]) -> None:
    stored("evt_metrics_2", {"id": "evt_metrics_2", "type": "ping.unknown", "created": int(time.time())})
    assert reconcile.process("evt_metrics_2", 0) == store.IGNORED
    store.replay("evt_metrics_2")
    metrics.clear_metrics()
    assert reconcile.process("evt_metrics_2", 1) == store.IGNORED
    assert values(measured, "WebhookProcessed") == [1.0]
    assert values(measured, "WebhookProcessingLag") == []


def test_an_event_that_cannot_be_applied_counts_as_failed(measured: dict[str, Any]) -> None:
    stored("evt_metrics_3", ["not", "an", "event"], type_="customer.updated")
    assert reconcile.process("evt_metrics_3", 0) == store.FAILED
    assert values(measured, "WebhookFailed") == [1.0]
    assert values(measured, "WebhookProcessed") == values(measured, "WebhookProcessingLag") == []
