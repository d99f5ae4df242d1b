"""Promotion codes: the customer-facing string that resolves to a coupon.

The processor is canonical; the projection keeps what an admin filters and
sorts on (code, active, coupon, expiry, redemptions). Two paths write it:

- the user path (create, activate/deactivate, metadata): validates, calls
  the processor with an idempotency key derived from the request, then
  records the row with its ledger row in one transaction;
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
its own promotion code as the guard's holder. A row a create request has
recorded already (`create_key`) makes the same processor id a 409.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, metadata
from billing.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.customers import records as customers
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.tables import PromotionCodeGuardRow, PromotionCodeRow, connection
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.promotions import columns, coupons

CODE = re.compile(r"^[A-Za-z0-9-]{1,500}$")
GUARD_PREFIX = "guard#code#"
LIST_KEY = "promotion_code"
REASONS = ("not_found", "inactive", "expired", "max_redemptions_reached", "coupon_missing", "customer_mismatch")
MAX_CODE_MATCHES = 100


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


def code_key(code: str) -> str:
    return PromotionCodeRow.code_key_for(code)


def guard_key(key: str) -> str:
    return GUARD_PREFIX + key


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


def create_idempotency_key(processor: str, params: dict[str, Any], generation: int) -> str:
    """Derived from the request and the code's guard generation: the same
    request again gets the same processor object, while the same code after
    it was released (deactivated) gets a new one."""
    canonical = json.dumps([processor, generation, params], sort_keys=True, separators=(",", ":"))
    return "promotion-code-create-" + hashlib.sha256(canonical.encode()).hexdigest()[:48]


# -- reads ---------------------------------------------------------------------------


def find(promotion_code_id: str) -> PromotionCodeRow | None:
    if promotion_code_id.startswith(GUARD_PREFIX):
        return None  # a guard item, not a promotion code
    try:
        return PromotionCodeRow.get(promotion_code_id, consistent_read=True)
    except DoesNotExist:
        return None


def load(promotion_code_id: str) -> PromotionCodeRow:
    row = find(promotion_code_id)
    if row is None:
        raise NotFound(f"promotion code {promotion_code_id} not found")
    return row


def guard(key: str) -> PromotionCodeGuardRow | None:
    try:
        return PromotionCodeGuardRow.get(guard_key(key), consistent_read=True)
    except DoesNotExist:
        return None


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def to_api(row: PromotionCodeRow) -> dict[str, Any]:
    return {
        "id": row.pk, "processor": processor_name(), "processor_id": row.processor_id or row.pk, "code": row.code,
        "active": row.active, "coupon_id": row.coupon_id, "stripe_customer_id": row.processor_customer_id,
        "max_redemptions": _int(row.max_redemptions), "times_redeemed": _int(row.times_redeemed),
        "expires_at": _int(row.expires_at), "metadata": row.metadata or {}, "data": row.data or {},
        "lock_version": row.lock_version, "last_stripe_event_ts": _int(row.last_stripe_event_ts),
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at,
    }


def get(promotion_code_id: str) -> dict[str, Any]:
    return to_api(load(promotion_code_id))


# -- the code guard (both paths) ---------------------------------------------------------


def _claim(tw: TransactWrite, key: str, promotion_code_id: str) -> None:
    G = PromotionCodeGuardRow
    tw.update(G(pk=guard_key(key)), actions=[G.promotion_code_id.set(promotion_code_id), G.kind.set("code_guard")],
              condition=G.promotion_code_id.does_not_exist())


def _release(tw: TransactWrite, key: str, promotion_code_id: str) -> None:
    G = PromotionCodeGuardRow
    tw.update(G(pk=guard_key(key)), actions=[G.promotion_code_id.remove(), G.generation.add(1)],
              condition=G.promotion_code_id == promotion_code_id)


def add_code_guard(tw: TransactWrite, row: PromotionCodeRow, previous_code_key: str | None, *,
                   require: bool = False) -> bool:
    """Add to the transaction that writes `row` the guard changes its state
    calls for: claim the code while it is active, release what it held once
    it is not (or its code changed). True if a claim was added.

    A guard another promotion code holds is left alone unless `require`
    (the user path's create, which must own its code or fail): the webhook
    path applies the processor's state and never fails on a stale claim.
    Conditions make a concurrent change cancel the transaction; the caller
    re-reads and tries again.
    """
    want = row.code_key if row.active and row.code_key else None
    for key in {k for k in (previous_code_key, row.code_key) if k is not None and k != want}:
        held = guard(key)
        if held is not None and held.promotion_code_id == row.pk:
            _release(tw, key, row.pk)
    if want is None:
        return False
    held = guard(want)
    holder = held.promotion_code_id if held is not None else None
    if holder == row.pk:
        return False
    if holder is None or require:
        _claim(tw, want, row.pk)
        return True
    logger.info("code guard held by another promotion code",
                extra={"promotion_code_id": row.pk, "holder": holder})
    return False


# -- create ------------------------------------------------------------------------


def validate(req: NewPromotionCode) -> None:
    problems: dict[str, str] = {}
    if not CODE.fullmatch(req.code):
        problems["code"] = "1 to 500 letters, digits or dashes"
    if req.expires_at is not None and req.expires_at <= int(time.time()):
        problems["expires_at"] = "must be in the future"
    if problems:
        raise ValidationFailed(f"invalid promotion code: {', '.join(sorted(problems))}", {"fields": problems})
    metadata.validate(req.metadata)


def _columns(obj: dict[str, Any], row: PromotionCodeRow) -> dict[str, Any]:
    return columns.promotion_code(obj, "promotion_code.created", row)


def _duplicate_code(code: str, holder: str | None) -> Conflict:
    details = {"code": code, "reason": "duplicate_code"}
    if holder is not None:
        details["promotion_code_id"] = holder
    return Conflict(f"an active promotion code already uses the code {code!r} (codes ignore case)", details)


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
    key = create_idempotency_key(processor_name(), params, generation)
    holder_id = held.promotion_code_id if held is not None else None
    if req.active and holder_id:
        holder = find(holder_id)
        if holder is not None and holder.create_key == key:
            raise _duplicate_processor_id(holder)
        if holder is not None and holder.create_key:
            raise _duplicate_code(req.code, holder_id)
        # Held by a row only a webhook recorded: it may be this very request's
        # promotion code (its webhook won the race, or our response was
        # lost). The processor knows: the same key gives the same object back,
        # and a different request for an active code is refused.
    try:
        obj = get_processor().create_promotion_code(idempotency_key=key, params=params)
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise _duplicate_code(req.code, holder_id) from None
        raise_for_processor(failure)
    return to_api(_record(obj, key, actor))


def _first_failed(exc: TransactWriteError) -> bool:
    reasons = exc.cancellation_reasons or []
    return bool(reasons) and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed"


def _last_failed(exc: TransactWriteError) -> bool:
    reasons = exc.cancellation_reasons or []
    return bool(reasons) and reasons[-1] is not None and reasons[-1].code == "ConditionalCheckFailed"


def _record(obj: dict[str, Any], key: str, actor: Actor) -> PromotionCodeRow:
    """Record what the processor created: a new row (claiming its code), or
    the webhook's row merged, or a 409 if a create request recorded it."""
    promo_id = str(obj["id"])
    for attempt in range(customers.CONFLICT_RETRIES):
        existing = find(promo_id)
        if existing is not None:
            if existing.create_key:
                raise _duplicate_processor_id(existing)
            merged = _merge(existing, obj, key, actor)
            if merged is None:
                customers.backoff(attempt)
                continue
            return merged
        now = clock.iso()
        row = PromotionCodeRow(pk=promo_id, inserted_at=now, updated_at=now, create_key=key)
        for name, value in _columns(obj, row).items():
            setattr(row, name, value)
        row.data = scrub(obj)
        claimed = False
        try:
            # Items go puts first (row, ledger), then updates (the guard):
            # the row's reason is the first, the guard's the last.
            with TransactWrite(connection=connection()) as tw:
                tw.save(row, condition=PromotionCodeRow.pk.does_not_exist())
                claimed = add_code_guard(tw, row, None, require=True)
                ledger.append(tw, type_="promotion_code.created", subject_type="promotion_code", subject_id=promo_id,
                              actor=actor, data={"processor_id": promo_id, "code": row.code,
                                                 "coupon_id": row.coupon_id, "active": row.active},
                              idempotency_key=key)
        except TransactWriteError as exc:
            if _first_failed(exc):
                customers.backoff(attempt)
                continue  # the webhook path wrote the row meanwhile: merge into it
            if claimed and _last_failed(exc):
                held = guard(row.code_key or "")
                holder = held.promotion_code_id if held is not None else None
                if holder == promo_id:
                    continue  # claimed for this very promotion code: its row is there now
                if holder is not None:
                    _withdraw(promo_id)
                    raise _duplicate_code(row.code or "", holder) from None
            if customers.lost_race(exc):
                customers.backoff(attempt)
                continue
            raise
        logger.info("promotion code created", extra={"promotion_code_id": promo_id, "guarded": claimed})
        return row
    raise Conflict("the promotion code is being recorded concurrently; retry")


def _merge(row: PromotionCodeRow, obj: dict[str, Any], key: str, actor: Actor) -> PromotionCodeRow | None:
    """Adopt the row a promotion_code.created webhook wrote first. Its state
    is at least as new as this create's answer, so only the columns it left
    empty are filled in; the guard is claimed if it is free (the webhook
    path normally claimed it already). None: lost a race, re-read."""
    previous_code_key = row.code_key
    filled = []
    for name, value in _columns(obj, row).items():
        if getattr(row, name) is None and value is not None:
            setattr(row, name, value)
            filled.append(name)
    if not row.data:
        row.data = scrub(obj)
    row.create_key = key
    row.updated_at = clock.iso()
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row)  # conditional on the lock_version read
            add_code_guard(tw, row, previous_code_key)
            ledger.append(tw, type_="promotion_code.create_confirmed", subject_type="promotion_code",
                          subject_id=row.pk, actor=actor,
                          data={"processor_id": row.pk, "recorded_first_by": "webhook", "filled_fields": filled},
                          idempotency_key=key)
    except TransactWriteError as exc:
        if customers.lost_race(exc):
            return None
        raise
    logger.info("promotion code create merged into the webhook's row", extra={"promotion_code_id": row.pk})
    return row


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
            raise _duplicate_code(row.code or "", holder)
    digest = hashlib.sha256(json.dumps([row.pk, row.lock_version, params], sort_keys=True).encode()).hexdigest()
    try:
        obj = get_processor().update_promotion_code(row.pk, params=params,
                                                    idempotency_key=f"promotion-code-update-{digest[:48]}")
    except ProcessorFailure as failure:
        if failure.code == "resource_already_exists":
            raise _duplicate_code(row.code or "", None) from None
        raise_for_processor(failure)
    return to_api(_apply_update(promotion_code_id, obj, sorted(params), actor, activating=bool(params.get("active"))))


def _apply_update(promotion_code_id: str, obj: dict[str, Any], changed: list[str], actor: Actor, *,
                  activating: bool) -> PromotionCodeRow:
    """Record the processor's answer (canonical) on the row. A concurrent
    write (a webhook) makes us re-read and re-apply: the processor has the
    change already, so it must land."""
    for attempt in range(customers.CONFLICT_RETRIES * 2):
        row = load(promotion_code_id)
        previous_code_key = row.code_key
        for name, value in _columns(obj, row).items():
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
            if claimed and _last_failed(exc) and not _first_failed(exc):
                held = guard(row.code_key or "")
                holder = held.promotion_code_id if held is not None else None
                if holder is not None and holder != row.pk:
                    # Another code took it between our check and now: undo ours.
                    _withdraw(row.pk)
                    raise _duplicate_code(row.code or "", holder) from None
            if customers.lost_race(exc):
                customers.backoff(attempt)
                continue
            raise
        return row
    raise Conflict("the promotion code is changing too fast; retry")


# -- listing -----------------------------------------------------------------------

# Each index's key attributes (with the table's pk): what a cursor must hold.
_INDEX_KEYS = {
    "by_code": ("code_key",),
    "by_coupon": ("coupon_id", "expires_sort"),
    "by_expires_at": ("list_key", "expires_sort"),
    "by_times_redeemed": ("list_key", "redeemed_sort"),
}


def _decode_cursor(cursor: str | None, index: str, hash_value: str, order: str) -> dict[str, Any] | None:
    state = customers.decode_cursor(cursor)
    if state is None:
        return None
    invalid = ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    if (state.get("index"), state.get("hash"), state.get("order")) != (index, hash_value, order):
        raise invalid
    key = state.get("key")
    names = {"pk", *_INDEX_KEYS[index]}
    if not isinstance(key, dict) or set(key) != names:
        raise invalid
    for value in key.values():
        if not (isinstance(value, dict) and set(value) == {"S"} and isinstance(value["S"], str) and value["S"]):
            raise invalid
    if key[_INDEX_KEYS[index][0]]["S"] != hash_value:
        raise invalid
    return key


def list_codes(*, active: bool | None, code: str | None, coupon: str | None, sort: str, order: str, limit: int,
               cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every combination; the other filters narrow
    the page. `code` (few rows per code) comes in index order; `coupon` with
    sort=times_redeemed reads the times_redeemed index narrowed to the coupon."""
    condition: Any = None

    def narrow(term: Any) -> None:
        nonlocal condition
        condition = term if condition is None else condition & term

    if code is not None:
        index, hash_value = "by_code", code_key(code)
        if coupon is not None:
            narrow(PromotionCodeRow.coupon_id == coupon)
    elif coupon is not None and sort == "expires_at":
        index, hash_value = "by_coupon", coupon
    else:
        index = "by_expires_at" if sort == "expires_at" else "by_times_redeemed"
        hash_value = LIST_KEY
        if coupon is not None:
            narrow(PromotionCodeRow.coupon_id == coupon)
    if active is not None:
        narrow(PromotionCodeRow.active == active)
    start = _decode_cursor(cursor, index, hash_value, order)
    found = getattr(PromotionCodeRow, index).query(hash_value, filter_condition=condition, limit=limit,
                                                   page_size=limit, last_evaluated_key=start,
                                                   scan_index_forward=order == "asc")
    rows = list(found)
    last = found.last_evaluated_key
    next_cursor = customers.encode_cursor({"index": index, "hash": hash_value, "order": order, "key": last}) \
        if last else None
    return [to_api(r) for r in rows], next_cursor


# -- redemption check ------------------------------------------------------------------


def _candidate(code: str, processor_customer_id: str | None) -> PromotionCodeRow | None:
    """The promotion code a customer typing `code` would get: the guard's
    holder (a consistent read), else the best of the rows with that code."""
    key = code_key(code)
    held = guard(key)
    if held is not None and held.promotion_code_id:
        holder = find(held.promotion_code_id)
        if holder is not None and holder.active:
            return holder
    rows: list[PromotionCodeRow] = list(PromotionCodeRow.by_code.query(key, limit=MAX_CODE_MATCHES))
    if not rows:
        return None

    def rank(row: PromotionCodeRow) -> tuple[int, int, str]:
        restriction = row.processor_customer_id
        fits = 0 if restriction is not None and restriction == processor_customer_id else \
            1 if restriction is None else 2
        return (0 if row.active else 1, fits, row.pk)

    return min(rows, key=rank)


def _reason(row: PromotionCodeRow | None, processor_customer_id: str | None) -> str | None:
    if row is None:
        return "not_found"
    if not row.active:
        return "inactive"
    if row.expires_at is not None and int(row.expires_at) <= int(time.time()):
        return "expired"
    if row.max_redemptions is not None and int(row.times_redeemed or 0) >= int(row.max_redemptions):
        return "max_redemptions_reached"
    coupon = coupons.find(row.coupon_id) if row.coupon_id else None
    if coupon is None or coupon.deleted_at or coupon.valid is False:
        return "coupon_missing"
    if row.processor_customer_id is not None and row.processor_customer_id != processor_customer_id:
        return "customer_mismatch"
    return None


def check(code: str, customer_id: str | None) -> dict[str, Any]:
    """Whether `code` can be redeemed (by `customer_id`, a local customer),
    and if not the first reason in REASONS' order. A code restricted to a
    customer is a customer_mismatch when no customer is given."""
    processor_customer_id = customers.load(customer_id).processor_id if customer_id is not None else None
    row = _candidate(code, processor_customer_id) if CODE.fullmatch(code) else None
    reason = _reason(row, processor_customer_id)
    return {"valid": reason is None, "reason": reason}
