"""Coupons: the user path's create (on the processor first, then projected
with its ledger row) and reads. The webhook path (billing.webhooks.objects)
keeps the rows current; both paths fill the same columns, so a row is the
same whichever path wrote it first.

A create derives its processor idempotency key from the request itself, so
a retried request gets the coupon its first attempt made, never a second
one. The row is keyed by the processor's id; once a create request has
recorded it (`create_key`), the same processor coupon again is a conflict,
while a row only a webhook wrote (its coupon.created won the race) is
merged into and returned.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, metadata
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.customers import records as customers
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.tables import CouponRow, connection
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.promotions import columns

DURATIONS = ("once", "repeating", "forever")
# Unix seconds up to the end of year 9999: what the API accepts as a time.
MAX_TIMESTAMP = 253402300799


@dataclass(frozen=True)
class NewCoupon:
    """What a caller may give a new coupon (Stripe's create parameters)."""

    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration: str = "once"
    duration_in_months: int | None = None
    max_redemptions: int | None = None
    redeem_by: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    id: str | None = None


def validate(req: NewCoupon) -> None:
    """The rules that span fields or depend on the time (single-field limits
    are the API model's); every problem named at once, nothing written."""
    problems: dict[str, str] = {}
    if (req.percent_off is None) == (req.amount_off is None):
        problems["percent_off"] = "give exactly one of percent_off or amount_off"
    if req.percent_off is not None and not 0 < req.percent_off <= 100:
        problems["percent_off"] = "must be greater than 0 and at most 100"
    elif req.percent_off is not None and round(req.percent_off, 2) != req.percent_off:
        problems["percent_off"] = "at most two decimal places"
    if req.amount_off is not None and req.currency is None:
        problems["currency"] = "required with amount_off"
    if req.percent_off is not None and req.currency is not None:
        problems["currency"] = "only with amount_off"
    if req.duration not in DURATIONS:
        problems["duration"] = f"one of {', '.join(DURATIONS)}"
    elif req.duration == "repeating" and req.duration_in_months is None:
        problems["duration_in_months"] = "required when duration is repeating"
    elif req.duration != "repeating" and req.duration_in_months is not None:
        problems["duration_in_months"] = "only when duration is repeating"
    if req.redeem_by is not None and req.redeem_by <= int(time.time()):
        problems["redeem_by"] = "must be in the future"
    if problems:
        raise ValidationFailed(f"invalid coupon: {', '.join(sorted(problems))}", {"fields": problems})
    metadata.validate(req.metadata)


def processor_params(req: NewCoupon) -> dict[str, Any]:
    params: dict[str, Any] = {"duration": req.duration}
    for name in ("id", "name", "percent_off", "amount_off", "currency", "duration_in_months", "max_redemptions",
                 "redeem_by"):
        value = getattr(req, name)
        if value is not None:
            params[name] = value
    if req.metadata:
        params["metadata"] = dict(req.metadata)
    return params


def create_idempotency_key(processor: str, params: dict[str, Any]) -> str:
    """Derived from the request: the same request again is the same processor coupon."""
    canonical = json.dumps([processor, params], sort_keys=True, separators=(",", ":"))
    return "coupon-create-" + hashlib.sha256(canonical.encode()).hexdigest()[:48]


# -- reads ---------------------------------------------------------------------------


def find(coupon_id: str) -> CouponRow | None:
    try:
        return CouponRow.get(coupon_id, consistent_read=True)
    except DoesNotExist:
        return None


def load(coupon_id: str) -> CouponRow:
    row = find(coupon_id)
    if row is None:
        raise NotFound(f"coupon {coupon_id} not found")
    return row


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def to_api(row: CouponRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor": processor_name(), "processor_id": row.processor_id or row.pk,
        "name": row.name, "percent_off": row.percent_off, "amount_off": _int(row.amount_off),
        "currency": row.currency, "duration": row.duration, "duration_in_months": _int(row.duration_in_months),
        "valid": row.valid, "max_redemptions": _int(row.max_redemptions),
        "times_redeemed": _int(row.times_redeemed), "redeem_by": _int(row.redeem_by),
        "metadata": row.metadata or {}, "data": row.data or {}, "lock_version": row.lock_version,
        "last_stripe_event_ts": _int(row.last_stripe_event_ts), "last_stripe_event_id": row.last_stripe_event_id,
        "inserted_at": row.inserted_at, "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


def get(coupon_id: str) -> dict[str, Any]:
    return to_api(load(coupon_id))


# -- the user path ---------------------------------------------------------------------


def _columns(obj: dict[str, Any], row: CouponRow) -> dict[str, Any]:
    return columns.coupon(obj, "coupon.created", row)


def _duplicate(row: CouponRow) -> Conflict:
    return Conflict(f"coupon {row.pk} was already created by an earlier request",
                    {"coupon_id": row.pk, "reason": "duplicate_processor_id"})


def _cancelled_first(exc: TransactWriteError) -> bool:
    reasons = exc.cancellation_reasons or []
    return bool(reasons) and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed"


def create(req: NewCoupon, actor: Actor) -> dict[str, Any]:
    validate(req)
    params = processor_params(req)
    key = create_idempotency_key(processor_name(), params)
    if req.id is not None:
        known = find(req.id)
        if known is not None and known.create_key:
            raise _duplicate(known)
    try:
        obj = get_processor().create_coupon(idempotency_key=key, params=params)
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise Conflict("a coupon with this id already exists at the processor",
                           {"coupon_id": req.id, "reason": "duplicate_processor_id"}) from None
        raise_for_processor(failure)
    return to_api(_record(obj, key, actor))


def _record(obj: dict[str, Any], key: str, actor: Actor) -> CouponRow:
    coupon_id = str(obj["id"])
    for attempt in range(customers.CONFLICT_RETRIES):
        existing = find(coupon_id)
        if existing is not None:
            if existing.create_key:
                raise _duplicate(existing)
            merged = _merge(existing, obj, key, actor)
            if merged is None:
                customers.backoff(attempt)
                continue
            return merged
        now = clock.iso()
        row = CouponRow(pk=coupon_id, inserted_at=now, updated_at=now, create_key=key)
        for name, value in _columns(obj, row).items():
            setattr(row, name, value)
        row.data = scrub(obj)
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row, condition=CouponRow.pk.does_not_exist())
                ledger.append(tw, type_="coupon.created", subject_type="coupon", subject_id=coupon_id, actor=actor,
                              data={"processor_id": coupon_id}, idempotency_key=key)
        except TransactWriteError as exc:
            if _cancelled_first(exc) or customers.lost_race(exc):
                # The webhook path recorded it meanwhile: merge on the next pass.
                customers.backoff(attempt)
                continue
            raise
        logger.info("coupon created", extra={"coupon_id": coupon_id})
        return row
    raise Conflict("the coupon is being recorded concurrently; retry")


def _merge(row: CouponRow, obj: dict[str, Any], key: str, actor: Actor) -> CouponRow | None:
    """Adopt the row a coupon.created webhook wrote first: its state is at
    least as new as this create's answer (it carries a watermark), so only
    the columns it left empty are filled in. None: lost a race, re-read."""
    filled = []
    for name, value in _columns(obj, row).items():
        if getattr(row, name) is None and value is not None:
            setattr(row, name, value)
            filled.append(name)
    row.create_key = key
    row.updated_at = clock.iso()
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row)  # conditional on the lock_version read
            ledger.append(tw, type_="coupon.create_confirmed", subject_type="coupon", subject_id=row.pk, actor=actor,
                          data={"processor_id": row.pk, "recorded_first_by": "webhook", "filled_fields": filled},
                          idempotency_key=key)
    except TransactWriteError as exc:
        if customers.lost_race(exc):
            return None
        raise
    logger.info("coupon create merged into the webhook's row", extra={"coupon_id": row.pk})
    return row
