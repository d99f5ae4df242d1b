"""Promotion codes: the customer-facing string that resolves to a coupon.

The processor is canonical; the projection keeps what an admin filters and
sorts on (code, active, coupon, expiry, redemptions). Two paths write it:

- the user path (create, activate/deactivate, metadata): validates, calls
  the processor with an idempotency key derived from the request's
  Idempotency-Key (a POST without it creates a new code each time, as on
  Stripe), then records the row with its ledger row in one transaction;
- the webhook path (billing.webhooks.objects): applies whatever the
  processor says, under the watermark rules, without required-field checks.

Uniqueness. The row's key is the processor id, so one row per processor
object. A code is unique among *active* codes, case-insensitively (as Stripe
matches them; stricter than Stripe's per-customer rule, so a code always
names one active promotion): an active row claims the guard item
`guard#code#<CODE>` (attribute_not_exists on its holder) in the transaction
that records or activates it, and releases it (generation + 1) in the one
that deactivates it, whichever path that is.

The paths converge. A promotion_code.created webhook may land before the
user path's create has finished (or after its response was lost): the
webhook path writes the row and claims the guard for that processor id;
the user path then finds the row (not recorded by a create request yet)
and merges into it instead of failing or duplicating it, and recognises
its own promotion code as the guard's holder. A row another create request
has recorded already (`create_key`) makes the same processor id a 409.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, idempotency, metadata
from billing.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.customers import records as customers
from billing.data import ledger, reads
from billing.data.cancellation import condition_failed
from billing.data.ledger import Actor
from billing.data.reads import whole
from billing.data.tables import PromotionCodeRow, connection
from billing.data.transactions import CONFLICT_RETRIES, Retry, retry_on_conflict
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.promotions import columns, coupons
from billing.promotions.guards import GUARD_PREFIX, add_code_guard, code_key, duplicate_code, guard
from billing.promotions.recording import Recording, record

CODE = re.compile(r"^[A-Za-z0-9-]{1,500}$")


@dataclass(frozen=True)
class NewPromotionCode:
    """What a caller may give a new promotion code."""

    code: str
    coupon: str
    active: bool = True
    max_redemptions: int | None = None
    expires_at: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer_id: str | None = None  # restrict it to this (local) customer






def processor_params(req: NewPromotionCode, processor_customer_id: str | None) -> dict[str, Any]:
    """Stripe's create parameters: the current API points at the coupon
    through `promotion`; the older top-level `coupon` is not sent."""
    params: dict[str, Any] = {"promotion": {"type": "coupon", "coupon": req.coupon}, "code": req.code,
                              "active": req.active}
    if req.max_redemptions is not None:
        params["max_redemptions"] = req.max_redemptions
    if req.expires_at is not None:
        params["expires_at"] = req.expires_at
    if req.metadata:
        params["metadata"] = dict(req.metadata)
    if processor_customer_id is not None:
        params["customer"] = processor_customer_id
    return params


def create_idempotency_key(generation: int) -> str:
    """From the request's Idempotency-Key and the code's guard generation: the
    same request again gets the same processor object, while the same code
    after it was released (deactivated) gets a new one."""
    return idempotency.processor_key("promotion-code-create", str(generation))


# -- reads ---------------------------------------------------------------------------


def find(promotion_code_id: str) -> PromotionCodeRow | None:
    if promotion_code_id.startswith(GUARD_PREFIX):
        return None  # a guard item, not a promotion code
    return reads.find(PromotionCodeRow, promotion_code_id)


def load(promotion_code_id: str) -> PromotionCodeRow:
    if promotion_code_id.startswith(GUARD_PREFIX):
        raise NotFound(f"promotion code {promotion_code_id} not found")
    return reads.load(PromotionCodeRow, promotion_code_id, f"promotion code {promotion_code_id}")





def to_api(row: PromotionCodeRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor": processor_name(), "processor_id": row.processor_id or row.pk, "code": row.code,
        "active": row.active, "coupon_id": row.coupon_id, "stripe_customer_id": row.processor_customer_id,
        "max_redemptions": whole(row.max_redemptions), "times_redeemed": whole(row.times_redeemed),
        "expires_at": whole(row.expires_at), "metadata": row.metadata or {}, "data": row.data or {},
        "lock_version": row.lock_version, "last_stripe_event_ts": whole(row.last_stripe_event_ts),
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at,
    }


def get(promotion_code_id: str) -> dict[str, Any]:
    return to_api(load(promotion_code_id))


# -- the code guard (both paths) ---------------------------------------------------------








# -- create ------------------------------------------------------------------------


def validate(req: NewPromotionCode) -> None:
    problems: dict[str, str] = {}
    if not CODE.fullmatch(req.code):
        problems["code"] = "1 to 500 letters, digits or dashes"
    if req.expires_at is not None and req.expires_at <= int(time.time()):
        problems["expires_at"] = "must be in the future"
    if problems:
        raise ValidationFailed.of_fields("invalid promotion code", problems)
    metadata.validate(req.metadata)


def _duplicate_processor_id(row: PromotionCodeRow) -> Conflict:
    return Conflict(f"promotion code {row.pk} was already recorded by an earlier create request",
                    {"promotion_code_id": row.pk, "reason": "duplicate_processor_id"})


def _processor_customer(customer_id: str | None) -> str | None:
    if customer_id is None:
        return None
    customer = customers.load(customer_id)
    if customer.deleted_at or not customer.processor_id:
        raise Conflict(f"customer {customer_id} is deleted or has no processor customer",
                       {"customer_id": customer_id})
    return customer.processor_id


def create(req: NewPromotionCode, actor: Actor) -> dict[str, Any]:
    validate(req)
    coupon = coupons.find(req.coupon)
    if coupon is not None and coupon.deleted_at:
        raise NotFound(f"coupon {req.coupon} is deleted", {"coupon": req.coupon})
    params = processor_params(req, _processor_customer(req.customer_id))
    key_of_code = code_key(req.code)
    held = guard(key_of_code)
    generation = int(held.generation or 0) if held is not None else 0
    key = create_idempotency_key(generation)
    holder_id = held.promotion_code_id if held is not None else None
    if req.active and holder_id:
        holder = find(holder_id)
        if holder is not None and holder.create_key == key:
            return to_api(holder)  # this very request, retried after its answer was lost
        if holder is not None and holder.create_key:
            raise duplicate_code(req.code, holder_id)
        # Held by a row only a webhook recorded: it may be this very request's
        # promotion code (its webhook won the race, or our response was
        # lost). The processor knows: the same key gives the same object back,
        # and a different request for an active code is refused.
    try:
        obj = get_processor().create_promotion_code(idempotency_key=key, params=params)
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise duplicate_code(req.code, holder_id) from None
        raise_for_processor(failure)
    return to_api(record(RECORDING, obj, key, actor))






def _claim(tw: TransactWrite, row: PromotionCodeRow, previous_code_key: str | None, require: bool) -> bool:
    return add_code_guard(tw, row, previous_code_key, require=require)


def _claim_lost(row: PromotionCodeRow) -> None:
    held = guard(row.code_key or "")
    holder = held.promotion_code_id if held is not None else None
    if holder == row.pk:
        raise Retry  # claimed for this very promotion code: its row is there now
    if holder is not None:
        _withdraw(row.pk)
        raise duplicate_code(row.code or "", holder)


RECORDING = Recording(
    kind="promotion_code", model=PromotionCodeRow, columns=columns.promotion_code,
    duplicate=_duplicate_processor_id, claim=_claim, claim_lost=_claim_lost,
    created_data=lambda row: {"processor_id": row.pk, "code": row.code, "coupon_id": row.coupon_id,
                              "active": row.active},
)


def _withdraw(promotion_code_id: str) -> None:
    """The processor made a code whose local claim lost a race: deactivate it
    so it cannot be redeemed behind the 409. Best effort; its webhooks record it."""
    try:
        get_processor().update_promotion_code(promotion_code_id, params={"active": False},
                                              idempotency_key=f"promotion-code-withdraw-{promotion_code_id}")
    except ProcessorFailure as failure:
        logger.error("could not deactivate a promotion code that lost its code claim",
                     extra={"promotion_code_id": promotion_code_id, "error": failure.to_safe_dict()})


# -- update ------------------------------------------------------------------------


def update(promotion_code_id: str, *, active: bool | None, metadata_update: dict[str, Any] | None,
           expected_version: int | None, actor: Actor) -> dict[str, Any]:
    """Activate/deactivate and metadata: the processor first, then the row,
    its guard and the ledger in one transaction. A stale expected version
    (If-Match or body lock_version) is 412 before anything is sent."""
    row = load(promotion_code_id)
    if expected_version is not None and row.lock_version != expected_version:
        raise PreconditionFailed(
            f"lock_version {expected_version} is stale; the promotion code is at {row.lock_version}",
            {"lock_version": row.lock_version})
    params: dict[str, Any] = {}
    if active is not None and active != row.active:
        params["active"] = active
    if metadata_update is not None:
        merged = metadata.merge(row.metadata or {}, metadata_update)
        if merged != (row.metadata or {}):
            params["metadata"] = dict(metadata_update)
    if not params:
        return to_api(row)
    if params.get("active") and row.code_key:
        held = guard(row.code_key)
        holder = held.promotion_code_id if held is not None else None
        if holder is not None and holder != row.pk:
            raise duplicate_code(row.code or "", holder)
    digest = hashlib.sha256(json.dumps([row.pk, row.lock_version, params], sort_keys=True).encode()).hexdigest()
    try:
        obj = get_processor().update_promotion_code(row.pk, params=params,
                                                    idempotency_key=f"promotion-code-update-{digest[:48]}")
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise duplicate_code(row.code or "", None) from None
        raise_for_processor(failure)
    return to_api(_apply_update(promotion_code_id, obj, sorted(params), actor, activating=bool(params.get("active"))))


def _apply_update(promotion_code_id: str, obj: dict[str, Any], changed: list[str], actor: Actor, *,
                  activating: bool) -> PromotionCodeRow:
    """Record the processor's answer (canonical) on the row. A concurrent
    write (a webhook) makes us re-read and re-apply: the processor has the
    change already, so it must land."""

    def attempt() -> PromotionCodeRow:
        row = load(promotion_code_id)
        previous_code_key = row.code_key
        for name, value in columns.promotion_code(obj, "promotion_code.updated", row).items():
            setattr(row, name, value)
        row.data = scrub(obj)
        row.updated_at = clock.iso()
        claimed = False
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row)  # conditional on the lock_version just read
                claimed = add_code_guard(tw, row, previous_code_key, require=activating)
                ledger.append(tw, type_="promotion_code.updated", subject_type="promotion_code", subject_id=row.pk,
                              actor=actor, data={"changed_fields": changed})
        except TransactWriteError as exc:
            if claimed and condition_failed(exc, -1) and not condition_failed(exc, 0):
                held = guard(row.code_key or "")
                holder = held.promotion_code_id if held is not None else None
                if holder is not None and holder != row.pk:
                    # Another code took it between our check and now: undo ours.
                    _withdraw(row.pk)
                    raise duplicate_code(row.code or "", holder) from None
            raise
        return row

    return retry_on_conflict(attempt, subject="the promotion code", attempts=2 * CONFLICT_RETRIES)
