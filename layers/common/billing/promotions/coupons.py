"""Coupons: the user path's create (on the processor first, then projected
with its ledger row) and reads. The webhook path (billing.webhooks.objects)
keeps the rows current; both paths fill the same columns, so a row is the
same whichever path wrote it first.

A create calls the processor with an idempotency key derived from the
request's Idempotency-Key (billing.core.idempotency): a retried request
gets the coupon its first attempt made, never a second one, while a POST
without the header creates a new coupon each time, as on Stripe. The row is
keyed by the processor's id; once a create request has recorded it
(`create_key`), the same processor coupon again is a conflict (unless it is
that very request, retried), while a row only a webhook wrote (its
coupon.created won the race) is merged into and returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from billing.core import idempotency, metadata
from billing.core.errors import Conflict, ValidationFailed
from billing.data import reads
from billing.data.ledger import Actor
from billing.data.reads import whole
from billing.data.tables import CouponRow
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.promotions import columns
from billing.promotions.recording import Recording, record

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
        raise ValidationFailed.of_fields("invalid coupon", problems)
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


def create_idempotency_key() -> str:
    """From the request's Idempotency-Key: its retry is the same processor coupon;
    without the header, a new one."""
    return idempotency.processor_key("coupon-create")


# -- reads ---------------------------------------------------------------------------


def find(coupon_id: str) -> CouponRow | None:
    return reads.find(CouponRow, coupon_id)


def load(coupon_id: str) -> CouponRow:
    return reads.load(CouponRow, coupon_id, f"coupon {coupon_id}")



def to_api(row: CouponRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor": processor_name(), "processor_id": row.processor_id or row.pk,
        "name": row.name, "percent_off": row.percent_off, "amount_off": whole(row.amount_off),
        "currency": row.currency, "duration": row.duration, "duration_in_months": whole(row.duration_in_months),
        "valid": row.valid, "max_redemptions": whole(row.max_redemptions),
        "times_redeemed": whole(row.times_redeemed), "redeem_by": whole(row.redeem_by),
        "metadata": row.metadata or {}, "data": row.data or {}, "lock_version": row.lock_version,
        "last_stripe_event_ts": whole(row.last_stripe_event_ts), "last_stripe_event_id": row.last_stripe_event_id,
        "inserted_at": row.inserted_at, "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


def get(coupon_id: str) -> dict[str, Any]:
    return to_api(load(coupon_id))


# -- the user path ---------------------------------------------------------------------


def _duplicate(row: CouponRow) -> Conflict:
    return Conflict(f"coupon {row.pk} was already created by an earlier request",
                    {"coupon_id": row.pk, "reason": "duplicate_processor_id"})


RECORDING = Recording(kind="coupon", model=CouponRow, columns=columns.coupon, duplicate=_duplicate,
                      created_data=lambda row: {"processor_id": row.pk})


def create(req: NewCoupon, actor: Actor) -> dict[str, Any]:
    validate(req)
    params = processor_params(req)
    key = create_idempotency_key()
    if req.id is not None:
        known = find(req.id)
        if known is not None and known.create_key == key:
            return to_api(known)  # this very request, retried after its answer was lost
        if known is not None and known.create_key:
            raise _duplicate(known)
    try:
        obj = get_processor().create_coupon(idempotency_key=key, params=params)
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise Conflict("a coupon with this id already exists at the processor",
                           {"coupon_id": req.id, "reason": "duplicate_processor_id"}) from None
        raise_for_processor(failure)
    return to_api(record(RECORDING, obj, key, actor))
