"""Missed events: a schedule reads Stripe's Events API from a stored cursor
and stores every event the webhook store does not have yet, through the
webhook's own once-only put (billing.webhooks.inbox, via "poll"), so it
flows through the normal stream and is applied like a delivered webhook.
An outage longer than Stripe's three days of webhook retries loses
nothing, within the Events API's 30 days.

Stripe lists events newest first; `ending_before=<cursor>` gives the page
nearest the cursor on its newer side, so each page is read in reverse,
oldest first, and the cursor (the newest event passed, kept in the sync
table) moves after each page. An event younger than
EVENTS_POLL_MIN_AGE_SECONDS is left to its webhook, and the cursor stops
before it, so the next run reads it again: the poll never races a webhook
that is on its way, and an event that becomes visible in the list a moment
after a newer one is still read. Events of types nothing projects are
not stored (they would only be `ignored`). Which events are already stored
is read first (one BatchGetItem a page), so a run over events the webhooks
brought writes nothing; the put is conditional anyway, so an event
delivered both ways is one row, applied once.

The first run starts at the newest event old enough (what came before is the
backfill's). A cursor Stripe no longer has (older than 30 days, after a
longer outage) restarts there too, counted in EventsPollCursorLost: run a
backfill then. Each run reports EventsPollBehind, how far behind now its
cursor was left (0 when it caught up; a run that ran out of pages is
behind), and EventsPollStored, the events only the poll found; the stalled
alarm fires when the poll stays behind or stops reporting.

Thin events live in another list: meter error reports
(`v1.billing.meter.error_report_triggered`, `.no_meter_found`) are v2
events, which only `/v2/core/events` lists. Each run reads that list too,
with its own cursor (a `created` second: the v2 list is newest first and
takes a created range, not a position), from the cursor's second to the
same horizon, and stores each event missing as its thin webhook would have
been stored (without the `data` the list adds), through the same put. A run
whose page budget ends before the list does leaves that cursor where it was
(the older events not read yet are read by the next run).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import PutError

from billing.core import clock
from billing.core.observability import logger, metrics
from billing.core.settings import EventsPollSettings, load
from billing.data.reads import find
from billing.data.sync_tables import EventsPollRow
from billing.data.tables import WebhookEventRow
from billing.metering.meter_errors import METER_ERROR_EVENT_TYPES
from billing.processor import get_processor
from billing.processor.base import MAX_LIST_LIMIT, unix_seconds
from billing.processor.errors import ProcessorFailure
from billing.webhooks import reconcile

CURSOR_KEY: Final = "events_poll"
THIN_CURSOR_KEY: Final = "events_poll_v2"
# The v2 events only /v2/core/events lists (the snapshot types are the v1 list's).
THIN_TYPES: Final = sorted(METER_ERROR_EVENT_TYPES)
VIA: Final = "poll"
# Stripe keeps events for 30 days; a cursor within an hour of that edge is restarted.
RETENTION_SECONDS: Final = 30 * 86400 - 3600


class CursorMoved(Exception):
    """Another run moved the cursor meanwhile (runs never overlap by design)."""


def _cursor(key: str = CURSOR_KEY) -> EventsPollRow:
    return find(EventsPollRow, key) or EventsPollRow(pk=key)


def _save(row: EventsPollRow) -> None:
    row.last_run_at = clock.iso()
    try:
        row.save()  # conditional on the lock_version read (a new row: that it does not exist)
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise CursorMoved from None
        raise


def _missing(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the page the webhook store does not have (one BatchGetItem)."""
    ids = list(dict.fromkeys(str(e["id"]) for e in events))
    if not ids:
        return []
    stored = {row.pk for row in WebhookEventRow.batch_get(ids, attributes_to_get=["pk"])}
    return [e for e in events if str(e["id"]) not in stored]


def _store(events: list[dict[str, Any]], table: str) -> int:
    """Put every projected event not stored yet; how many this run stored."""
    wanted = [e for e in events if isinstance(e.get("type"), str) and reconcile.handles(e["type"])]
    stored = 0
    missing = _missing(wanted)
    if not missing:
        return 0
    # Only a run that finds an event the webhooks did not bring stores one: the
    # put (boto3, beside PynamoDB's botocore) is imported then, not by every cold start.
    from billing.webhooks import inbox

    for event in missing:
        delivery = inbox.read(event, json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        if inbox.put_once(delivery, table, via=VIA):
            stored += 1
            logger.info("Stripe event stored by the events poll",
                        extra={"event_id": delivery.id, "event_type": delivery.type})
    return stored


def _events(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in page.get("data") or [] if isinstance(e, dict) and isinstance(e.get("id"), str)
            and isinstance(e.get("created"), int)]


def _start(row: EventsPollRow, horizon: int, table: str) -> int:
    """Place the cursor at the newest event old enough (storing it if missing)."""
    newest = _events(get_processor().list_objects("event", limit=1, params={"created": {"lte": horizon}}))
    if not newest:
        return 0
    stored = _store(newest, table)
    row.cursor_id, row.cursor_created = str(newest[0]["id"]), int(newest[0]["created"])
    row.stored_total = int(row.stored_total or 0) + stored
    return stored


def _thin_events(page: dict[str, Any]) -> list[dict[str, Any]]:
    """The listed v2 events as their thin webhook carries them (no `data`)."""
    return [{k: v for k, v in e.items() if k != "data"} for e in page.get("data") or []
            if isinstance(e, dict) and isinstance(e.get("id"), str) and e.get("created")]


def _poll_thin(now: int, horizon: int, settings: EventsPollSettings) -> dict[str, Any]:
    """One pass over /v2/core/events from its cursor's second to the horizon."""
    row = _cursor(THIN_CURSOR_KEY)
    processor = get_processor()
    oldest = now - RETENTION_SECONDS
    start: int | None = None if row.cursor_created is None else int(row.cursor_created)
    if start is not None and start < oldest:
        logger.error("thin events poll cursor is past Stripe's retention: restarting at the newest event")
        metrics.add_metric(name="EventsPollCursorLost", unit=MetricUnit.Count, value=1)
        start = None
    if start is None:  # the first run: from the newest event old enough, as the v1 list's
        newest = _thin_events(processor.list_v2_events(types=THIN_TYPES, created_gte=oldest, created_lte=horizon,
                                                       limit=1))
        start = unix_seconds(newest[0]["created"]) if newest else horizon
    page = processor.list_v2_events(types=THIN_TYPES, created_gte=start, created_lte=horizon,
                                    limit=settings.events_poll_max_pages * MAX_LIST_LIMIT)
    events = _thin_events(page)
    stored = _store(events, settings.webhook_events_table)
    caught_up = not page.get("has_more")
    # Newest first: a list longer than the budget left its oldest unread, so the cursor stays.
    row.cursor_created = horizon if caught_up else start
    row.behind_seconds = 0 if caught_up else max(0, now - start)
    row.stored_total = int(row.stored_total or 0) + stored
    _save(row)
    return {"stored": stored, "seen": len(events), "caught_up": caught_up, "behind_seconds": row.behind_seconds}


def poll() -> dict[str, Any]:
    """One run: from the cursor, page after page (oldest first) until an event
    too young, the end of the list, or the run's page budget."""
    settings = load(EventsPollSettings)
    now = int(time.time())
    horizon = now - settings.events_poll_min_age_seconds
    row = _cursor()
    processor = get_processor()
    stored = seen = 0
    caught_up = False
    if row.cursor_id is not None and (row.cursor_created or 0) < now - RETENTION_SECONDS:
        logger.error("events poll cursor is past Stripe's retention: restarting at the newest event; "
                     "run a backfill", extra={"cursor": row.cursor_id})
        metrics.add_metric(name="EventsPollCursorLost", unit=MetricUnit.Count, value=1)
        row.cursor_id = None
    try:
        if row.cursor_id is None:
            stored += _start(row, horizon, settings.webhook_events_table)
            _save(row)
        for _ in range(settings.events_poll_max_pages):
            if row.cursor_id is None:
                caught_up = True  # Stripe has no event old enough yet
                break
            try:
                page = processor.list_objects("event", limit=MAX_LIST_LIMIT, ending_before=row.cursor_id)
            except ProcessorFailure as failure:
                if failure.code != "resource_missing":
                    raise
                logger.error("events poll cursor is gone at Stripe: restarting at the newest event; run a "
                             "backfill", extra={"cursor": row.cursor_id})
                metrics.add_metric(name="EventsPollCursorLost", unit=MetricUnit.Count, value=1)
                row.cursor_id = None
                stored += _start(row, horizon, settings.webhook_events_table)
                _save(row)
                continue
            # Stripe's page is newest first, in its list's order (which `created`, in
            # whole seconds, cannot tell apart): reversed, it is oldest first.
            events = list(reversed(_events(page)))
            ready = []
            for event in events:
                if int(event["created"]) > horizon:
                    break  # left to its webhook; read again next run
                ready.append(event)
            seen += len(ready)
            page_stored = _store(ready, settings.webhook_events_table)
            stored += page_stored
            row.stored_total = int(row.stored_total or 0) + page_stored
            if ready:
                row.cursor_id, row.cursor_created = str(ready[-1]["id"]), int(ready[-1]["created"])
            if len(ready) < len(events) or not page.get("has_more"):
                caught_up = True
            row.behind_seconds = 0 if caught_up else max(0, now - int(row.cursor_created or now))
            _save(row)
            if caught_up:
                break
        thin = _poll_thin(now, horizon, settings)
    except CursorMoved:
        logger.warning("events poll cursor moved by another run; this run stops")
        return {"stored": stored, "seen": seen, "cursor": row.cursor_id, "caught_up": False, "superseded": True}
    stored += thin["stored"]
    seen += thin["seen"]
    behind = max(0 if caught_up else max(0, now - int(row.cursor_created or now)), int(thin["behind_seconds"]))
    caught_up = caught_up and thin["caught_up"]
    metrics.add_metric(name="EventsPollBehind", unit=MetricUnit.Seconds, value=behind)
    metrics.add_metric(name="EventsPollStored", unit=MetricUnit.Count, value=stored)
    logger.info("events poll ran", extra={"stored": stored, "seen": seen, "behind_seconds": behind,
                                          "caught_up": caught_up, "thin_stored": thin["stored"]})
    return {"stored": stored, "seen": seen, "cursor": row.cursor_id, "caught_up": caught_up,
            "behind_seconds": behind}
