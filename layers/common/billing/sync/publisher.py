"""The publisher function: every ledger row, and every usage event that ends
failed, onto the stack's EventBridge bus (DESIGN.md section 8).

Two stream mappings feed it, told apart by the stream's table: the ledger's
(inserts: every row is new; usage.* rows are skipped) and meter_events'
(filtered to rows whose new image is failed and whose old image was not).
Records are turned into events (domain_events.py) and put in order per
subject (bus.py). The answer is Lambda's partial batch response: the
records EventBridge did not accept, and every later record of their
subjects; Lambda retries from the lowest of them, so nothing is lost and
each subject's events are put in order. Records after that point that were
already put go out again on the retry: delivery is at least once, and each
event carries its id for consumers to deduplicate. After the mapping's
retries, the range goes to the on-failure queue (its alarm pages).

A stream record that can never be an event (no image, no type) is logged
and skipped: retrying it would only hold its shard back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from botocore.exceptions import BotoCoreError, ClientError

from billing.core.aws import LazyClient
from billing.core.observability import logger, metrics
from billing.core.settings import EventPublisherSettings, load
from billing.sync import bus
from billing.sync.domain_events import DomainEvent, Unpublishable, from_ledger, from_usage

_events = LazyClient("events")


def put_entries(entries: list[dict[str, Any]]) -> list[bool]:
    """One PutEvents call; whether each entry was accepted. A call that fails
    as a whole (after botocore's own retries) accepts none."""
    try:
        response = _events().put_events(Entries=entries)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        logger.warning("PutEvents failed", extra={"code": code, "entries": len(entries)})
        return [False] * len(entries)
    results = response.get("Entries") or []
    accepted = []
    for i in range(len(entries)):
        result = results[i] if i < len(results) else {}
        ok = bool(result.get("EventId")) and not result.get("ErrorCode")
        if not ok:
            logger.warning("PutEvents refused an entry",
                           extra={"code": result.get("ErrorCode"), "detail_type": entries[i].get("DetailType")})
        accepted.append(ok)
    return accepted


def _table_of(stream_arn: str | None) -> str | None:
    """`arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>` -> name."""
    if not stream_arn or ":table/" not in stream_arn:
        return None
    return stream_arn.split(":table/", 1)[1].split("/", 1)[0]


def to_event(record: DynamoDBRecord, settings: EventPublisherSettings) -> DomainEvent | None:
    stream = record.dynamodb
    if stream is None:
        raise Unpublishable("a stream record without its dynamodb section")
    table = _table_of(record.event_source_arn)
    if table == settings.events_table:
        return from_ledger(stream.new_image)
    if table == settings.meter_events_table:
        return from_usage(stream.new_image, stream.old_image)
    raise Unpublishable("a stream record of a table this function does not publish")


def handle(event: dict[str, Any]) -> dict[str, Any]:
    settings = load(EventPublisherSettings)
    outgoing: list[bus.Outgoing] = []
    skipped = unpublishable = 0
    for raw in event.get("Records") or []:
        record = DynamoDBRecord(raw)
        sequence = record.dynamodb.sequence_number if record.dynamodb is not None else None
        try:
            domain_event = to_event(record, settings)
        except Unpublishable as exc:
            unpublishable += 1
            logger.error("stream record cannot be published; skipped",
                         extra={"reason": str(exc), "sequence_number": sequence, "event_id": record.event_id})
            continue
        if domain_event is None:
            skipped += 1
            continue
        outgoing.append(bus.Outgoing(str(sequence), domain_event))
    result = bus.publish(outgoing, settings.event_bus_name, put_entries)
    if result.published:
        metrics.add_metric(name="DomainEventsPublished", unit=MetricUnit.Count, value=len(result.published))
    if result.failed:
        metrics.add_metric(name="DomainEventsFailed", unit=MetricUnit.Count, value=len(result.failed))
    if unpublishable:
        metrics.add_metric(name="DomainEventsUnpublishable", unit=MetricUnit.Count, value=unpublishable)
    logger.info("domain events published", extra={
        "records": len(event.get("Records") or []), "published": len(result.published),
        "failed": len(result.failed), "skipped": skipped, "put_events_calls": result.calls})
    return {"batchItemFailures": [{"itemIdentifier": item.record_id} for item in result.failed]}
