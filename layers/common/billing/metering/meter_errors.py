"""Stripe's asynchronous verdict on usage it already accepted.

`v1.billing.meter.error_report_triggered` and `v1.billing.meter.no_meter_found`
arrive as thin events (no `data`): the full event is fetched from
`/v2/core/events/{id}`, and every `data.reason.error_types[].sample_errors[]
.request.identifier` in it moves its meter_events row to failed, even if it
was reported. Stripe lists sample errors, not necessarily every failed event:
rows it does not name stay as they are.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from billing.core.observability import logger, metrics
from billing.data.ledger import Actor
from billing.metering import lifecycle, outbox
from billing.processor import get_processor

METER_ERROR_EVENT_TYPES = frozenset({"v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"})


def _samples(event: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(identifier, code, message) for every sample error that names an identifier."""
    out: list[tuple[str, str | None, str | None]] = []
    reason = (event.get("data") or {}).get("reason") or {}
    for error_type in reason.get("error_types") or []:
        if not isinstance(error_type, dict):
            continue
        code = error_type.get("code")
        for sample in error_type.get("sample_errors") or []:
            if not isinstance(sample, dict):
                continue
            identifier = (sample.get("request") or {}).get("identifier")
            if isinstance(identifier, str) and identifier:
                out.append((identifier, str(code) if code is not None else None,
                            str(sample.get("error_message") or "") or None))
    return out


def handle_meter_error_event(event_id: str, event_type: str, actor: Actor) -> int:
    """Fail the rows a meter error event names; returns how many changed state.

    A ProcessorFailure from fetching the event propagates: the caller (the
    webhook dispatcher) decides whether to retry. Identifiers we never
    accepted are logged and ignored; a row already failed is left as it is,
    so handling the same event twice moves nothing the second time.
    """
    if event_type not in METER_ERROR_EVENT_TYPES:
        logger.warning("not a meter error event type", extra={"event_id": event_id, "event_type": event_type})
    event = get_processor().retrieve_v2_event(event_id)
    moved = 0
    seen: set[str] = set()
    for identifier, code, message in _samples(event):
        if identifier in seen:
            continue
        seen.add(identifier)
        if not outbox.IDENTIFIER.match(outbox.row_identifier(identifier)):
            logger.warning("meter error names an identifier this service never accepts",
                           extra={"event_id": event_id})
            continue
        if lifecycle.fail_from_meter_error(identifier, code, message, actor):
            moved += 1
    if moved:
        metrics.add_metric(name="UsageFailed", unit=MetricUnit.Count, value=moved)
    logger.info("meter error event handled", extra={"event_id": event_id, "event_type": event_type,
                                                    "identifiers": len(seen), "moved": moved})
    return moved
