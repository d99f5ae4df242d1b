"""Taking a usage report: the request's rules (identifier, time window,
customer), and the accepting write. The row is written `pending` by one
conditional PutItem before Stripe is ever called (it is its own audit
record: no ledger row); the table's stream then drives delivery
(billing.metering.delivery). PUT /v1/usage/{identifier} and every event of
POST /v1/usage/batch come through `accept`."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit

from billing.core import clock, ids, snapstart
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.core.observability import logger, metrics
from billing.customers import records as customers
from billing.data.conditional import put_new
from billing.data.ledger import Actor
from billing.data.usage_tables import MeterEventRow
from billing.metering.outbox import (
    FUTURE_WINDOW_SECONDS,
    PAST_WINDOW_SECONDS,
    PENDING,
    lane,
    load,
    to_api,
    validate_identifier,
)

CUSTOMER_CACHE_SECONDS: Final = 60.0
CUSTOMER_CACHE_SIZE: Final = 2048


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
# A snapshot's entries (and its monotonic clock) are not this environment's.
snapstart.after_restore(_customer_cache.clear)


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


def accept(identifier: str, usage: UsageInput, actor: Actor) -> tuple[dict[str, Any], bool]:
    """PUT /v1/usage/{identifier}: accept_event, counted and logged."""
    row, created = accept_event(identifier, usage)
    if created:
        metrics.add_metric(name="UsageAccepted", unit=MetricUnit.Count, value=1)
        logger.info("usage accepted", extra={"identifier": identifier, "customer_id": row["customer_id"],
                                             "event_name": usage.event_name, "actor": actor.type})
    return row, created


def accept_event(identifier: str, usage: UsageInput) -> tuple[dict[str, Any], bool]:
    """Write the usage row, pending: one conditional PutItem. The rules and
    the write of every usage event, from PUT and from each event of a batch.

    Returns (row, created). One DynamoDB write request either way: the put is
    conditional on the identifier being new and, when it is not, DynamoDB
    returns the existing row with the refusal, so a replay costs no extra
    read. A duplicate storm on one identifier needs no retry loop: DynamoDB
    serialises the puts of one key, and every one but the first is refused.
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
        operation_id=usage.operation_id, request_digest=digest, stripe_status=PENDING, lane=lane(identifier),
        attempts=0, sweeps=0, pending_since=at, inserted_at=at, updated_at=at, lock_version=1,
    )
    existing = put_new(row)
    if existing is not None:
        held = MeterEventRow.from_raw_data(existing) if existing else load(identifier)
        if held.request_digest != digest:
            raise Conflict(f"identifier {identifier} was already used for a different usage event",
                           {"identifier": identifier}, type_="identifier_conflict")
        return to_api(held), False
    return to_api(row), True
