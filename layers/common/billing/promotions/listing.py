"""Reading promotion codes: the admin list (filters and sorts, each served by
an index) and the redemption check a checkout page asks."""

from __future__ import annotations

import time
from typing import Any

from billing.customers import records as customers
from billing.data import pagination
from billing.data.tables import PromotionCodeRow
from billing.promotions import coupons
from billing.promotions.codes import CODE, find, to_api
from billing.promotions.guards import code_key, guard

LIST_KEY = "promotion_code"
REASONS = ("not_found", "inactive", "expired", "max_redemptions_reached", "coupon_missing", "customer_mismatch")
MAX_CODE_MATCHES = 100


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
        index = "by_expires_lane" if sort == "expires_at" else "by_redeemed_lane"
        hash_value = LIST_KEY
        if coupon is not None:
            narrow(PromotionCodeRow.coupon_id == coupon)
    if active is not None:
        narrow(PromotionCodeRow.active == active)
    scope = f"promotion_codes:{index}:{hash_value}:{order}"
    page = pagination.laned_page if hash_value == LIST_KEY else pagination.query_page
    rows, next_cursor = page(PromotionCodeRow, getattr(PromotionCodeRow, index), hash_value, scope=scope,
                             limit=limit, cursor=cursor, condition=condition, newest_first=order != "asc")
    return [to_api(r) for r in rows], next_cursor


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
