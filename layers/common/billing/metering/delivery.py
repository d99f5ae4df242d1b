"""Delivering pending usage to Stripe: what meter_reporter does with a batch
of meter_events stream records (filtered to rows whose new image is pending).

Per batch:
1. right before each call to Stripe (and again before each retry), the rows
   about to be sent are read again, consistently: one that is no longer
   pending (reported by a concurrent delivery, or canceled by
   POST /v1/usage/{identifier}/cancel) is not sent;
2. v1: one `billing.meter_events` create per row, the rows of one
   (customer, event_name) pair strictly one after another (Stripe takes one
   call at a time per customer and meter), pairs in parallel;
   v2: one meter event session token per process until it expires, and up
   to 100 events per meter_event_stream call;
3. each outcome is written back with one conditional UpdateItem per row
   (on `stripe_status = pending`; a transaction would cost twice the write
   units), in parallel. A row canceled while its event was on the way to
   Stripe is canceled there too, with a meter event adjustment.

Every event carries its identifier, so a resend (a record redelivered after
a crash between the Stripe call and the write, a lost response, a sweep) is
deduplicated by Stripe and billed once. Transient failures are retried here
with jittered exponential backoff, then left pending and reported as partial
batch failures so the stream delivers them again; permanent ones fail the row.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pynamodb.exceptions import UpdateError

from billing.core import clock
from billing.core.observability import logger, metrics
from billing.core.settings import DeliverySettings, load
from billing.data.conditional import refused
from billing.data.usage_tables import MeterEventRow
from billing.metering import outbox
from billing.metering.cancel import compensate
from billing.metering.sessions import sessions as sessions  # re-exported: tests clear it
from billing.processor import get_processor
from billing.processor.base import MAX_STREAM_EVENTS
from billing.processor.errors import SESSION_EXPIRED, ProcessorFailure, is_systemic

REPORTED: Final = "reported"
FAILED: Final = "failed"
RETRY: Final = "retry"
SKIPPED: Final = "skipped"
# Stop starting retries when the invocation has less than this left: the
# outcomes still have to be written.
DEADLINE_MARGIN_SECONDS: Final = 5.0
# Stripe deduplicates a meter event identifier (and a v1 idempotency key)
# for 24 hours only. A row pending for longer may have reached Stripe already
# (a lost answer, a crash before the write): resending it could bill it
# twice, so it fails for a person to check instead.
MAX_PENDING_SECONDS: Final = 23 * 3600
# Outcome writes in flight at once (one conditional UpdateItem each).
WRITERS: Final = 16
STALE_MESSAGE: Final = (
    "pending for more than 23 hours: Stripe deduplicates an identifier for 24 hours only, so a resend "
    "could bill it twice. Check the customer's usage in Stripe, then retry it only if it is missing.")


@dataclass(frozen=True)
class DeliveryPolicy:
    mode: str
    tries: int
    backoff_base: float
    backoff_cap: float
    concurrency: int
    max_pending_seconds: float = MAX_PENDING_SECONDS

    @classmethod
    def from_settings(cls, settings: DeliverySettings | None = None) -> DeliveryPolicy:
        s = settings or load(DeliverySettings)
        return cls(mode=s.meter_api, tries=max(1, s.meter_transient_tries),
                   backoff_base=s.meter_backoff_base_ms / 1000, backoff_cap=s.meter_backoff_cap_ms / 1000,
                   concurrency=max(1, s.meter_v1_concurrency), max_pending_seconds=s.meter_max_pending_seconds)


@dataclass(frozen=True)
class Pending:
    """What delivery needs of a row, read from the stream record's new image."""

    identifier: str
    event_name: str
    stripe_customer_id: str
    value: int
    timestamp: int
    inserted_at: str
    pending_since: str
    # The identifier Stripe knows it by, if not its own (a retried rejection).
    stripe_identifier: str | None = None
    maybe_sent: bool = False  # stamped already: a send may have landed
    stamp_only: bool = False  # the image of that stamp's own write (outbox.maybe_sent_actions)

    @classmethod
    def from_image(cls, image: dict[str, Any]) -> Pending:
        return cls(
            identifier=str(image["pk"]), event_name=str(image["event_name"]),
            stripe_customer_id=str(image["stripe_customer_id"]), value=int(image["value"]),
            timestamp=int(image["occurred_ts"]), inserted_at=str(image["inserted_at"]),
            pending_since=str(image.get("pending_since") or image["inserted_at"]),
            stripe_identifier=str(image["stripe_identifier"]) if image.get("stripe_identifier") else None,
            maybe_sent=bool(image.get("maybe_sent_at")),
            stamp_only=str(image.get("maybe_sent_at") or "") > str(image["updated_at"]),
        )

    @property
    def sent_as(self) -> str:
        return self.stripe_identifier or self.identifier

    def payload(self) -> dict[str, str]:
        # Stripe's meter payload is a map of strings; the value travels as one.
        return {"stripe_customer_id": self.stripe_customer_id, "value": str(self.value)}


@dataclass(frozen=True)
class Outcome:
    kind: str  # reported | failed | retry | skipped
    error: dict[str, Any] | None = None
    attempted: bool = True  # whether Stripe was called (counted in `attempts`)
    # Whether a call carrying the event went out: it may have reached Stripe
    # even if it failed (a lost answer), so a row canceled meanwhile is
    # canceled at Stripe too.
    sent: bool = False


OK: Final = Outcome(REPORTED, sent=True)
DEFER: Final = Outcome(RETRY)
SKIP: Final = Outcome(SKIPPED, attempted=False)


class MalformedRecord(Exception):
    """A stream record whose image is not a usage row (left to the on-failure destination)."""


class DeliveryDeferred(Exception):
    """Stripe failed transiently for this row: the stream must deliver it again."""


# -- retries -------------------------------------------------------------------------------


def _may_have_landed(failure: ProcessorFailure) -> bool:
    """A failed call Stripe may still have carried out: no answer at all
    (network, timeout, an answer lost) or a 5xx. A 429, a lock timeout or an
    expired session was refused before anything happened."""
    return failure.status is None or failure.status >= 500


def _attempt(call: Callable[[], object], settings: DeliveryPolicy, deadline: float,
             context: dict[str, Any], still_due: Callable[[], bool]) -> Outcome:
    """Call until it succeeds, fails permanently, or the tries (or time) run
    out; before each call, `still_due()` says whether the rows are still to
    be sent (a row canceled meanwhile is not)."""
    failure: ProcessorFailure | None = None
    sent = False  # whether Stripe may hold the event already
    for attempt in range(settings.tries):
        if not still_due():
            return Outcome(SKIPPED, attempted=False, sent=sent)
        try:
            call()
            return OK
        except ProcessorFailure as exc:
            sent = sent or _may_have_landed(exc)
            if is_systemic(exc):
                # The deployment's key, not the row: every call would fail
                # alike, so the row waits (pending) until the key is fixed.
                metrics.add_metric(name="StripeAuthFailures", unit=MetricUnit.Count, value=1)
                logger.error("Stripe refused the API key; usage left pending until it is fixed",
                             extra={**context, "status": exc.status, "error_type": exc.type})
                return Outcome(RETRY, sent=sent)
            if not exc.transient:
                return Outcome(FAILED, outbox.safe_error(exc.type, exc.code, exc.message), sent=sent)
            failure = exc
        if attempt + 1 >= settings.tries:
            break
        # Full jitter: calls that failed together do not come back together.
        delay = random.uniform(0, min(settings.backoff_cap, settings.backoff_base * 2**attempt))  # noqa: S311
        if time.monotonic() + delay >= deadline:
            break
        time.sleep(delay)
    logger.warning("transient Stripe failure; left pending for the stream to deliver again",
                   extra={**context, "status": getattr(failure, "status", None),
                          "error_type": getattr(failure, "type", None), "code": getattr(failure, "code", None)})
    return Outcome(RETRY, sent=sent)


def _pending_now(events: Sequence[Pending]) -> set[str]:
    """Which of these rows are pending now, still as these images send them
    (a consistent read: the answer to "may this still be sent?" cannot be an
    older version; an image from before a retry re-identified it is not)."""
    found: set[str] = set()
    wanted = {e.identifier: e.sent_as for e in events}
    for chunk in _chunks(list(wanted), 100):
        for row in MeterEventRow.batch_get(chunk, consistent_read=True,
                                           attributes_to_get=["pk", "stripe_status", "stripe_identifier"]):
            if row.stripe_status == outbox.PENDING and (row.stripe_identifier or row.pk) == wanted[row.pk]:
                found.add(row.pk)
    return found


# -- v1 --------------------------------------------------------------------------------------


def _send_v1(events: Sequence[Pending], settings: DeliveryPolicy, deadline: float) -> dict[str, Outcome]:
    processor = get_processor()
    # Once Stripe keeps failing for one row, calls not yet started wait for the
    # redelivery instead of hammering an API that is down or throttling us.
    circuit = threading.Event()
    groups: dict[tuple[str, str], list[Pending]] = {}
    for event in events:
        groups.setdefault((event.stripe_customer_id, event.event_name), []).append(event)

    def run(group: list[Pending]) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for event in group:  # one (customer, meter) pair: strictly sequential
            if circuit.is_set():
                out[event.identifier] = DEFER
                continue

            def call(e: Pending = event) -> object:
                return processor.create_meter_event(event_name=e.event_name, identifier=e.sent_as,
                                                    timestamp=e.timestamp, payload=e.payload())

            def due(e: Pending = event) -> bool:
                return bool(_pending_now([e]))

            outcome = _attempt(call, settings, deadline, {"identifier": event.identifier}, due)
            if outcome.kind == RETRY:
                circuit.set()
            out[event.identifier] = outcome
        return out

    results: dict[str, Outcome] = {}
    if len(groups) <= 1:
        for group in groups.values():
            results.update(run(group))
        return results
    with ThreadPoolExecutor(max_workers=min(settings.concurrency, len(groups))) as pool:
        for part in pool.map(run, groups.values()):
            results.update(part)
    return results


# -- v2 --------------------------------------------------------------------------------------


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _send_stream(chunk: Sequence[Pending], settings: DeliveryPolicy, deadline: float) -> dict[str, Outcome]:
    processor = get_processor()
    # The chunk as it stands before each try: rows no longer pending drop out.
    sending: list[Pending] = list(chunk)
    dropped: dict[str, Outcome] = {}

    def due() -> bool:
        pending = _pending_now(sending)
        for event in sending:
            if event.identifier not in pending:
                dropped[event.identifier] = SKIP
        sending[:] = [e for e in sending if e.identifier in pending]
        return bool(sending)

    def call() -> object:
        token = sessions.token()
        try:
            processor.send_meter_events(session_token=token, events=[
                {"event_name": e.event_name, "identifier": e.sent_as, "timestamp": e.timestamp,
                 "payload": e.payload()} for e in sending])
        except ProcessorFailure as exc:
            if exc.type == SESSION_EXPIRED:
                sessions.invalidate(token)  # the retry opens a new session
            raise
        return None

    outcome = _attempt(call, settings, deadline, {"events": len(chunk), "first": chunk[0].identifier}, due)
    if outcome.kind == FAILED and len(sending) > 1:
        # Stripe refused the request as a whole: halve it until the events it
        # objects to stand alone, so one bad row does not fail the others.
        middle = len(sending) // 2
        return {**dropped, **_send_stream(sending[:middle], settings, deadline),
                **_send_stream(sending[middle:], settings, deadline)}
    # A row dropped after an earlier try of this chunk went out may have reached Stripe.
    was_sent = outcome.sent
    return {**{i: Outcome(SKIPPED, attempted=False, sent=was_sent) for i in dropped},
            **{e.identifier: outcome for e in sending}}


def _send_v2(events: Sequence[Pending], settings: DeliveryPolicy, deadline: float) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    for chunk in _chunks(events, MAX_STREAM_EVENTS):
        results.update(_send_stream(chunk, settings, deadline))
    return results


# -- writing outcomes back ---------------------------------------------------------------------


def _actions(event: Pending, outcome: Outcome, at: str) -> list[Any]:
    if outcome.kind == REPORTED:
        return outbox.reported_actions(at)
    if outcome.kind == RETRY:  # left pending, but a send may have landed
        return outbox.maybe_sent_actions(at)
    actions = outbox.failed_actions(event.identifier, outcome.error or {}, at, count_attempt=outcome.attempted)
    # failed_actions bumps the version already: only the stamp is added.
    return actions + outbox.maybe_sent_actions(at)[:1] if outcome.sent else actions


def _update_one(event: Pending, outcome: Outcome, at: str) -> bool:
    """One conditional UpdateItem (1 write unit): False if the row is no
    longer pending as this image sent it (Stripe did not take that send)."""
    sent_as = (MeterEventRow.stripe_identifier == event.stripe_identifier if event.stripe_identifier
               else MeterEventRow.stripe_identifier.does_not_exist())
    try:
        MeterEventRow(pk=event.identifier).update(actions=_actions(event, outcome, at),
                                                  condition=(MeterEventRow.stripe_status == outbox.PENDING) & sent_as)
    except UpdateError as exc:
        if not refused(exc):
            raise
        logger.info("row no longer pending; outcome not recorded",
                    extra={"identifier": event.identifier, "outcome": outcome.kind})
        return False
    return True


def _record(done: Sequence[tuple[Pending, Outcome]], at: str) -> list[tuple[Pending, Outcome]]:
    """Write the outcomes, one conditional update per row, in parallel; return those that applied."""
    if len(done) <= 1:
        return [(event, outcome) for event, outcome in done if _update_one(event, outcome, at)]
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(done))) as pool:
        applied = list(pool.map(lambda item: _update_one(item[0], item[1], at), done))
    return [item for item, ok in zip(done, applied, strict=True) if ok]


def _latency_ms(inserted_at: str, reported_at: str) -> float:
    start, end = datetime.fromisoformat(inserted_at), datetime.fromisoformat(reported_at)
    return max(0.0, (end - start).total_seconds() * 1000)


def deliver(events: Sequence[Pending], *, deadline: float, settings: DeliveryPolicy | None = None
            ) -> dict[str, Outcome]:
    """Deliver pending rows and record the outcomes; returns each identifier's outcome."""
    settings = settings or DeliveryPolicy.from_settings()
    outcomes: dict[str, Outcome] = {}
    now = time.time()
    stale = Outcome(FAILED, outbox.safe_error("stale_pending", "identifier_window_passed", STALE_MESSAGE),
                    attempted=False)
    for event in events:
        if now - datetime.fromisoformat(event.pending_since).timestamp() > settings.max_pending_seconds:
            outcomes[event.identifier] = stale
    to_send = [e for e in events if e.identifier not in outcomes]
    if to_send:
        send = _send_v2 if settings.mode == "v2" else _send_v1
        outcomes.update(send(to_send, settings, deadline))
    # Deferred rows whose send may have landed are stamped so, once (the
    # failure path's only extra write): a cancel then adjusts them at Stripe.
    finished = [(e, outcomes[e.identifier]) for e in events if outcomes[e.identifier].kind in (REPORTED, FAILED)
                or (outcomes[e.identifier].kind == RETRY and outcomes[e.identifier].sent and not e.maybe_sent)]
    at = clock.iso()
    applied = _record(finished, at)
    landed = {e.identifier for e, _ in applied}
    # A call that went out and whose row was not recorded (canceled since,
    # or left pending): if the row is canceled now, Stripe must not bill it.
    compensate([(e.identifier, e.event_name, e.sent_as) for e in events
                if outcomes[e.identifier].sent and e.identifier not in landed])
    applied = [(e, o) for e, o in applied if o.kind != RETRY]
    reported = [e for e, o in applied if o.kind == REPORTED]
    failed = [(e, o) for e, o in applied if o.kind == FAILED]
    if reported:
        metrics.add_metric(name="UsageReported", unit=MetricUnit.Count, value=len(reported))
        for event in reported:
            metrics.add_metric(name="ReportLatency", unit=MetricUnit.Milliseconds,
                               value=_latency_ms(event.inserted_at, at))
    if failed:
        metrics.add_metric(name="UsageFailed", unit=MetricUnit.Count, value=len(failed))
        for event, outcome in failed:
            logger.warning("usage failed permanently; see its stripe_error",
                           extra={"identifier": event.identifier, "error": outcome.error})
    logger.info("meter batch delivered", extra={
        "mode": settings.mode, "records": len(events), "reported": len(reported), "failed": len(failed),
        "deferred": sum(1 for o in outcomes.values() if o.kind == RETRY),
        "skipped": sum(1 for o in outcomes.values() if o.kind == SKIPPED)})
    return outcomes


# -- the stream handler's body ----------------------------------------------------------------------


def handle_stream(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Deliver the batch, then let Powertools report the records to deliver again."""
    parsed: dict[str, Pending | None] = {}
    unique: dict[str, Pending] = {}
    stamps: set[str] = set()
    for raw in event.get("Records") or []:
        record = DynamoDBRecord(raw)
        stream = record.dynamodb
        seq = str(stream.sequence_number) if stream is not None else ""
        try:
            pending = Pending.from_image(stream.new_image if stream is not None else {})
        except (KeyError, TypeError, ValueError):
            logger.error("stream record is not a usage row", extra={"sequence_number": seq})
            parsed[seq] = None
            continue
        if pending.stamp_only:
            # The maybe-sent stamp's own record: the record whose send failed
            # is being delivered again already; this one is not another.
            stamps.add(seq)
            continue
        parsed[seq] = pending
        # A row can appear twice in a batch (inserted, then swept or retried):
        # send it once, as its latest image describes it.
        unique[pending.identifier] = pending
    remaining = context.get_remaining_time_in_millis() / 1000
    outcomes = deliver(list(unique.values()), deadline=time.monotonic() + remaining - DEADLINE_MARGIN_SECONDS)

    def record_handler(record: DynamoDBRecord) -> None:
        stream = record.dynamodb
        seq = str(stream.sequence_number) if stream is not None else ""
        if seq in stamps:
            return
        pending = parsed.get(seq)
        if pending is None:
            raise MalformedRecord("stream record is not a usage row")
        if outcomes[pending.identifier].kind == RETRY:
            raise DeliveryDeferred(pending.identifier)

    # A batch that failed as a whole is still a partial failure (every record
    # listed), not a function error: bisecting it would only multiply calls
    # to a Stripe that is down. Bisection stays for real crashes.
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
