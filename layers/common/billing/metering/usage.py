"""Usage metering: the meter_events outbox (DESIGN.md section 4, Usage).

A PUT writes the row `pending` together with its ledger row in one
TransactWriteItems, before Stripe is ever called; the table's stream then
drives delivery (billing.metering.delivery). This module owns the row: its
shape, the request rules, reads and lists, and every transition a caller or
a schedule makes (retry, meter-error failure, sweep).

Index layout (template.yaml, MeterEventsTable):
- by_status (status_key, updated_at): sparse, only pending and failed rows
  carry `status_key`, so the dead-letter view and the sweeper never read the
  reported majority. The key is sharded (`failed#3`) so that a burst of
  accepted events does not funnel every index write into one partition key.
- by_reported (reported_key, reported_at): reported rows, sharded the same way.
- by_customer (customer_id, occurred_sort): one customer's usage, newest first.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.transactions import TransactWrite

from billing.core import clock, ids
from billing.core import settings as config
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.core.observability import logger, metrics
from billing.customers import records as customers
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.tables import MeterEventRow, connection
from billing.processor.errors import MAX_MESSAGE_LENGTH

PENDING: Final = "pending"
REPORTED: Final = "reported"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, REPORTED, FAILED)

IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,100}$")
# Stripe's meter event window: at most 35 days old, at most 5 minutes ahead.
PAST_WINDOW_SECONDS: Final = 35 * 24 * 3600
FUTURE_WINDOW_SECONDS: Final = 5 * 60
# Changing this re-keys the status indexes: rows written with another shard
# count would be invisible to lists until rewritten. Fixed on purpose.
STATUS_SHARDS: Final = 8
CUSTOMER_CACHE_SECONDS: Final = 60.0
CUSTOMER_CACHE_SIZE: Final = 2048
MAX_TRANSACTION_ITEMS: Final = 100
CONFLICT_RETRIES: Final = 5


# -- keys ------------------------------------------------------------------------------


def shard(identifier: str) -> int:
    return zlib.crc32(identifier.encode()) % STATUS_SHARDS


def status_key(status: str, identifier: str) -> str:
    return f"{status}#{shard(identifier)}"


def reported_key(identifier: str) -> str:
    return f"{REPORTED}#{shard(identifier)}"


def validate_identifier(identifier: str) -> None:
    if not IDENTIFIER.match(identifier):
        raise ValidationFailed("identifier must be 1 to 100 characters of A-Z, a-z, 0-9, _, -, . and :",
                               {"identifier": "invalid"})


# -- the request -------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageInput:
    """A validated PUT body (shape checked by the API model)."""

    event_name: str
    value: int
    timestamp: int | str | None = None
    customer_id: str | None = None
    stripe_customer_id: str | None = None
    owner_type: str | None = None
    owner_id: str | None = None
    operation_id: str | None = None


def parse_timestamp(raw: int | str | None, now: float) -> int:
    """Unix seconds from unix seconds or ISO 8601 (with an offset), inside Stripe's window."""
    if raw is None:
        return int(now)
    if isinstance(raw, int):
        ts = raw
    elif raw.strip().isdigit():
        ts = int(raw.strip())
    else:
        text = raw.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationFailed("timestamp must be unix seconds or ISO 8601",
                                   {"timestamp": "not a time"}) from None
        if moment.tzinfo is None:
            raise ValidationFailed("an ISO 8601 timestamp needs a UTC offset (e.g. Z)",
                                   {"timestamp": "no offset"})
        ts = math.floor(moment.timestamp())
    if ts < now - PAST_WINDOW_SECONDS:
        raise ValidationFailed("timestamp is more than 35 days in the past; Stripe would reject it",
                               {"timestamp": ts, "oldest_allowed": int(now) - PAST_WINDOW_SECONDS},
                               type_="timestamp_out_of_window")
    if ts > now + FUTURE_WINDOW_SECONDS:
        raise ValidationFailed("timestamp is more than 5 minutes in the future",
                               {"timestamp": ts, "latest_allowed": int(now) + FUTURE_WINDOW_SECONDS},
                               type_="timestamp_in_future")
    return ts


def _given_timestamp(raw: int | str | None, resolved: int) -> int | None:
    # A replay that also leaves the timestamp out is the same request, even
    # though "now" moved on; one that gives a time is compared on it.
    return None if raw is None else resolved


def request_digest(usage: UsageInput, customer_id: str, ts_given: int | None) -> str:
    canonical = json.dumps([usage.event_name, usage.value, ts_given, customer_id, usage.operation_id])
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- customer resolution ----------------------------------------------------------------


@dataclass(frozen=True)
class BillableCustomer:
    id: str
    processor_id: str


class _TTLCache:
    """A small LRU with expiry, kept across warm invocations of one process."""

    def __init__(self, size: int, ttl: float) -> None:
        self._size, self._ttl = size, ttl
        self._items: OrderedDict[tuple[str, ...], tuple[float, BillableCustomer]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> BillableCustomer | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            expires, value = found
            if expires < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, ...], value: BillableCustomer) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# Only found customers are cached (a customer created a second later must be
# found). A customer deleted within the TTL may still be billed for that long;
# Stripe then reports the event through a meter error, which fails the row.
_customer_cache = _TTLCache(CUSTOMER_CACHE_SIZE, CUSTOMER_CACHE_SECONDS)


def resolve_customer(usage: UsageInput) -> BillableCustomer:
    if usage.customer_id is not None:
        key: tuple[str, ...] = ("id", usage.customer_id)
    elif usage.stripe_customer_id is not None:
        key = ("processor_id", usage.stripe_customer_id)
    elif usage.owner_type is not None and usage.owner_id is not None:
        key = ("owner", usage.owner_type, usage.owner_id)
    else:
        raise ValidationFailed("give one of customer_id, stripe_customer_id or owner", {"customer": "missing"})
    cached = _customer_cache.get(key)
    if cached is not None:
        return cached
    if key[0] == "id":
        row: Any = customers.load(key[1])
    elif key[0] == "processor_id":
        row = customers.find_by_processor_id(key[1])
    else:
        row = customers.find_by_owner(key[1], key[2])
    label = "/".join(key[1:])
    if row is None:
        raise NotFound(f"no customer for {key[0]} {label}")
    if row.deleted_at:
        raise NotFound(f"customer {row.pk} is deleted")
    if not row.processor_id:
        raise NotFound(f"customer {row.pk} has no Stripe customer")
    found = BillableCustomer(row.pk, row.processor_id)
    _customer_cache.put(key, found)
    return found


# -- the row -----------------------------------------------------------------------------


def to_api(row: MeterEventRow) -> dict[str, Any]:
    return {
        "id": row.id, "identifier": row.pk, "customer_id": row.customer_id,
        "stripe_customer_id": row.stripe_customer_id, "event_name": row.event_name, "value": int(row.value),
        "occurred_at": row.occurred_at, "operation_id": row.operation_id, "stripe_status": row.stripe_status,
        "reported_at": row.reported_at, "stripe_error": row.stripe_error, "attempts": int(row.attempts or 0),
        "inserted_at": row.inserted_at, "updated_at": row.updated_at,
    }


def load(identifier: str) -> MeterEventRow:
    validate_identifier(identifier)
    try:
        return MeterEventRow.get(identifier, consistent_read=True)
    except DoesNotExist:
        raise NotFound(f"no usage event with identifier {identifier}") from None


def get(identifier: str) -> dict[str, Any]:
    return to_api(load(identifier))


def _cancel_codes(exc: TransactWriteError) -> list[str | None]:
    return [getattr(r, "code", None) if r else None for r in (exc.cancellation_reasons or [])]


def accept(identifier: str, usage: UsageInput, actor: Actor) -> tuple[dict[str, Any], bool]:
    """Write the usage row (pending) and its ledger row in one transaction.

    Returns (row, created). One DynamoDB write request either way: the row's
    put is conditional on the identifier being new and, when it is not,
    returns the existing row in the cancellation reason, so a replay costs
    no extra read.
    """
    validate_identifier(identifier)
    now = time.time()
    ts = parse_timestamp(usage.timestamp, now)
    customer = resolve_customer(usage)
    digest = request_digest(usage, customer.id, _given_timestamp(usage.timestamp, ts))
    at = clock.iso()
    occurred_at = clock.iso(datetime.fromtimestamp(ts, UTC))
    row = MeterEventRow(
        pk=identifier, id=ids.new_id("mev"), customer_id=customer.id, stripe_customer_id=customer.processor_id,
        event_name=usage.event_name, value=usage.value, occurred_ts=ts, occurred_at=occurred_at,
        occurred_sort=f"{occurred_at}#{identifier}", operation_id=usage.operation_id, request_digest=digest,
        stripe_status=PENDING, status_key=status_key(PENDING, identifier), attempts=0, sweeps=0,
        pending_since=at, inserted_at=at, updated_at=at, lock_version=1,
    )
    for attempt in range(CONFLICT_RETRIES):
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row, condition=MeterEventRow.pk.does_not_exist(), return_values="ALL_OLD")
                ledger.append(tw, type_="usage.accepted", subject_type="customer", subject_id=customer.id,
                              actor=actor, data={"identifier": identifier, "event_name": usage.event_name,
                                                 "value": usage.value, "occurred_at": occurred_at},
                              idempotency_key=identifier)
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            first = reasons[0] if reasons else None
            if first is not None and first.code == "TransactionConflict":
                # Another request for this identifier is mid-transaction (a
                # duplicate storm, on DynamoDB): nothing was written. Once it
                # commits, trying again finds its row and answers as a replay.
                customers.backoff(attempt)
                continue
            if first is None or first.code != "ConditionalCheckFailed":
                raise
            existing = MeterEventRow.from_raw_data(first.raw_item) if first.raw_item else load(identifier)
            if existing.request_digest != digest:
                raise Conflict(f"identifier {identifier} was already used for a different usage event",
                               {"identifier": identifier}, type_="identifier_conflict") from None
            return to_api(existing), False
        break
    else:
        raise Conflict(f"usage {identifier} is being written concurrently; send it again",
                       {"identifier": identifier})
    metrics.add_metric(name="UsageAccepted", unit=MetricUnit.Count, value=1)
    logger.info("usage accepted", extra={"identifier": identifier, "customer_id": customer.id,
                                         "event_name": usage.event_name})
    return to_api(row), True


# -- lists -------------------------------------------------------------------------------

_DONE: Final = "done"


def _index_key(row: MeterEventRow, hash_name: str, range_name: str) -> dict[str, Any]:
    return {"pk": {"S": row.pk}, hash_name: {"S": getattr(row, hash_name)},
            range_name: {"S": getattr(row, range_name)}}


def _decode_cursor(cursor: str | None, scope: str) -> dict[str, Any]:
    state = customers.decode_cursor(cursor)
    if state is None:
        return {}
    if state.get("scope") != scope or not isinstance(state.get("at"), dict):
        raise ValidationFailed("cursor belongs to another list", {"cursor": "invalid"})
    return dict(state["at"])


def _sharded_page(index: GlobalSecondaryIndex[Any], hash_name: str, range_name: str, prefix: str, *, limit: int,
                  cursor: str | None) -> tuple[list[MeterEventRow], str | None]:
    """One page, newest first, merged from every shard of `prefix`.

    Each shard is read in its own order and only ever consumed from the
    front (rows of one batch share a timestamp, and DynamoDB orders such ties
    its own way), so the cursor can keep, per shard, the key of the last row
    this list handed out (or "done"): no row is skipped or repeated.
    """
    scope = f"{hash_name}:{prefix}"
    state = _decode_cursor(cursor, scope)
    keys = [f"{prefix}#{n}" for n in range(STATUS_SHARDS)]
    fetched: dict[str, list[MeterEventRow]] = {}
    more: dict[str, bool] = {}
    for key in keys:
        position = state.get(key)
        if position == _DONE:
            continue
        result = index.query(key, scan_index_forward=False, limit=limit, page_size=limit,
                             last_evaluated_key=position or None)
        fetched[key] = list(result)
        more[key] = result.last_evaluated_key is not None
    taken = dict.fromkeys(fetched, 0)
    page: list[MeterEventRow] = []
    while len(page) < limit:
        heads = [(getattr(rows[taken[key]], range_name), rows[taken[key]].pk, key)
                 for key, rows in fetched.items() if taken[key] < len(rows)]
        if not heads:
            break
        _, _, key = max(heads)
        page.append(fetched[key][taken[key]])
        taken[key] += 1
    for key, rows in fetched.items():
        if taken[key]:
            state[key] = _index_key(rows[taken[key] - 1], hash_name, range_name)
        if taken[key] == len(rows) and not more[key]:
            state[key] = _DONE
    finished = all(state.get(k) == _DONE for k in keys)
    next_cursor = None if finished else customers.encode_cursor({"scope": scope, "at": state})
    return page, next_cursor


def list_usage(*, status: str | None, customer_id: str | None, limit: int, cursor: str | None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every filter: never a scan."""
    if customer_id is not None:
        condition = MeterEventRow.stripe_status == status if status else None
        result = MeterEventRow.by_customer.query(customer_id, filter_condition=condition, scan_index_forward=False,
                                                 limit=limit, last_evaluated_key=customers.decode_cursor(cursor))
        rows = list(result)
        return [to_api(r) for r in rows], customers.encode_cursor(result.last_evaluated_key)
    if status == REPORTED:
        found, next_cursor = _sharded_page(MeterEventRow.by_reported, "reported_key", "reported_at", REPORTED,
                                           limit=limit, cursor=cursor)
    elif status in (PENDING, FAILED):
        found, next_cursor = _sharded_page(MeterEventRow.by_status, "status_key", "updated_at", status,
                                           limit=limit, cursor=cursor)
    else:
        raise ValidationFailed("filter by status (pending, reported, failed) or customer_id",
                               {"status": "required without customer_id"})
    return [to_api(r) for r in found], next_cursor


# -- transitions -------------------------------------------------------------------------


def safe_error(error_type: str, code: str | None, message: str | None) -> dict[str, Any]:
    """The only shape `stripe_error` holds: derived, never a raw payload."""
    text = " ".join(str(message or "").split())
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "\u2026"
    return {"type": error_type, "code": code, "message": text}


def reported_actions(identifier: str, at: str) -> list[Action]:
    return [
        MeterEventRow.stripe_status.set(REPORTED), MeterEventRow.status_key.remove(),
        MeterEventRow.reported_key.set(reported_key(identifier)), MeterEventRow.reported_at.set(at),
        MeterEventRow.stripe_error.remove(), MeterEventRow.attempts.add(1), MeterEventRow.updated_at.set(at),
        MeterEventRow.lock_version.add(1),
    ]


def failed_actions(identifier: str, error: dict[str, Any], at: str, *, count_attempt: bool) -> list[Action]:
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(FAILED), MeterEventRow.status_key.set(status_key(FAILED, identifier)),
        MeterEventRow.reported_key.remove(), MeterEventRow.stripe_error.set(error),
        MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    if count_attempt:
        actions.append(MeterEventRow.attempts.add(1))
    return actions


def retry(identifier: str, actor: Actor) -> dict[str, Any]:
    """failed -> pending (the stream delivers it again); any other state is a 409."""
    row = load(identifier)
    if row.stripe_status != FAILED:
        raise Conflict(f"usage {identifier} is {row.stripe_status}; only failed usage can be retried",
                       {"stripe_status": row.stripe_status})
    at = clock.iso()
    actions: list[Action] = [
        MeterEventRow.stripe_status.set(PENDING), MeterEventRow.status_key.set(status_key(PENDING, identifier)),
        MeterEventRow.reported_key.remove(), MeterEventRow.reported_at.remove(), MeterEventRow.stripe_error.remove(),
        MeterEventRow.pending_since.set(at), MeterEventRow.updated_at.set(at), MeterEventRow.lock_version.add(1),
    ]
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.update(MeterEventRow(pk=identifier), actions=actions,
                      condition=(MeterEventRow.stripe_status == FAILED)
                      & (MeterEventRow.lock_version == row.lock_version))
            ledger.append(tw, type_="usage.retry_requested", subject_type="customer", subject_id=row.customer_id,
                          actor=actor, data={"identifier": identifier, "previous_error": row.stripe_error,
                                             "previous_reported_at": row.reported_at})
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" not in _cancel_codes(exc):
            raise
        current = load(identifier)
        raise Conflict(f"usage {identifier} changed concurrently; it is {current.stripe_status}",
                       {"stripe_status": current.stripe_status}) from None
    logger.info("usage retry requested", extra={"identifier": identifier, "customer_id": row.customer_id})
    return get(identifier)


def fail_from_meter_error(identifier: str, code: str | None, message: str | None, actor: Actor) -> bool:
    """Stripe rejected an accepted event after the fact: the row becomes failed
    (even if it was reported). False when there is no such row or it already is failed."""
    error = safe_error("meter_error", code, message)
    for _ in range(CONFLICT_RETRIES):
        try:
            row = MeterEventRow.get(identifier, consistent_read=True)
        except DoesNotExist:
            logger.warning("meter error names an unknown identifier", extra={"identifier": identifier})
            return False
        if row.stripe_status == FAILED:
            return False
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.update(MeterEventRow(pk=identifier),
                          actions=failed_actions(identifier, error, clock.iso(), count_attempt=False),
                          condition=MeterEventRow.lock_version == row.lock_version)
                ledger.append(tw, type_="usage.failed", subject_type="customer", subject_id=row.customer_id,
                              actor=actor, data={"identifier": identifier, "previous_status": row.stripe_status,
                                                 "stripe_error": error})
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" in _cancel_codes(exc):
                continue  # the reporter moved it meanwhile: read again
            raise
        logger.info("usage failed by a meter error report",
                    extra={"identifier": identifier, "previous_status": row.stripe_status, "code": code})
        return True
    raise Conflict(f"usage {identifier} is changing too fast; retry")


def sweep(*, min_age_seconds: float, max_rows: int) -> dict[str, int]:
    """Touch rows pending for longer than `min_age_seconds` (at most `max_rows`),
    oldest first, so the stream delivers them again.

    The touch keeps the row pending and bumps `sweeps`; it is conditional on
    the row not having moved since it was read, so a row the reporter has
    just reported is left alone.
    """
    cutoff = clock.iso(datetime.fromtimestamp(time.time() - min_age_seconds, UTC))
    per_shard = max(1, math.ceil(max_rows / STATUS_SHARDS))
    scanned = touched = 0
    for n in range(STATUS_SHARDS):
        budget = min(per_shard, max_rows - scanned)
        if budget <= 0:
            break
        rows = list(MeterEventRow.by_status.query(f"{PENDING}#{n}", MeterEventRow.updated_at < cutoff,
                                                  scan_index_forward=True, limit=budget, page_size=budget))
        for row in rows:
            scanned += 1
            at = clock.iso()
            try:
                row.update(actions=[MeterEventRow.sweeps.add(1), MeterEventRow.updated_at.set(at),
                                    MeterEventRow.lock_version.add(1)],
                           condition=(MeterEventRow.stripe_status == PENDING)
                           & (MeterEventRow.updated_at == row.updated_at))
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                continue
            touched += 1
    if touched:
        logger.info("pending usage re-driven", extra={"touched": touched, "scanned": scanned})
    return {"scanned": scanned, "touched": touched}


def sweep_from_env() -> dict[str, int]:
    """sweep() with the age and bound the template gives the sweeper."""
    result = sweep(min_age_seconds=float(config.optional("SWEEP_MIN_AGE_SECONDS", "900")),
                   max_rows=int(config.optional("SWEEP_MAX_ROWS", "500")))
    if result["touched"]:
        metrics.add_metric(name="UsageSwept", unit=MetricUnit.Count, value=result["touched"])
    return result
