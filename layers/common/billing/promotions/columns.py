"""The columns of coupon and promotion code rows, read from the processor's
object. Both paths use them (the user path's create and the webhook path),
so a row is the same whichever path wrote it first."""

from __future__ import annotations

from typing import Any

from billing.core import clock
from billing.data.lanes import laned
from billing.data.tables import PromotionCodeRow
from billing.processor.fields import boolean, integer, mapping, metadata, number, reference, text


def coupon(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    deleted = event_type == "coupon.deleted" or obj.get("deleted") is True
    return {
        "processor_id": obj["id"], "name": text(obj.get("name")), "percent_off": number(obj.get("percent_off")),
        "amount_off": integer(obj.get("amount_off")), "currency": text(obj.get("currency")),
        "duration": text(obj.get("duration")), "duration_in_months": integer(obj.get("duration_in_months")),
        "max_redemptions": integer(obj.get("max_redemptions")), "redeem_by": integer(obj.get("redeem_by")),
        "times_redeemed": integer(obj.get("times_redeemed")),
        "valid": False if deleted else boolean(obj.get("valid")),
        "deleted_at": (row.deleted_at or clock.iso()) if deleted else row.deleted_at,
        "metadata": metadata(obj),
    }


def promotion_code(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    code = text(obj.get("code"))
    promotion = mapping(obj.get("promotion"))
    # Older API versions name the coupon at the top level, newer ones under `promotion`.
    coupon_id = reference(obj.get("coupon")) or reference(promotion.get("coupon"))
    expires_at = integer(obj.get("expires_at"))
    times_redeemed = integer(obj.get("times_redeemed")) or 0
    return {
        "processor_id": obj["id"], "code": code, "code_key": PromotionCodeRow.code_key_for(code) if code else None,
        "coupon_id": coupon_id, "active": boolean(obj.get("active")), "expires_at": expires_at,
        "expires_sort": PromotionCodeRow.expires_sort_for(expires_at, obj["id"]),
        "times_redeemed": times_redeemed,
        "redeemed_sort": PromotionCodeRow.redeemed_sort_for(times_redeemed, obj["id"]),
        "list_lane": laned("promotion_code", obj["id"]),
        "max_redemptions": integer(obj.get("max_redemptions")),
        "processor_customer_id": reference(obj.get("customer")), "metadata": metadata(obj),
    }
