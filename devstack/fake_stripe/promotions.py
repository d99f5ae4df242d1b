"""Coupons and promotion codes in the Fake: Stripe's parameter checks, one
active promotion code per code (case-insensitively), and the current API's
`promotion[coupon]` as well as the older top-level `coupon`."""

from __future__ import annotations

import copy
from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import FakeCore, shape
from devstack.fake_stripe.events import changed

_COUPON_FIELDS: Final = frozenset(
    {
        "amount_off",
        "applies_to",
        "currency",
        "currency_options",
        "duration",
        "duration_in_months",
        "id",
        "max_redemptions",
        "metadata",
        "name",
        "percent_off",
        "redeem_by",
    }
)
_PROMOTION_CODE_FIELDS: Final = frozenset(
    {"active", "code", "coupon", "customer", "expires_at", "max_redemptions", "metadata", "promotion", "restrictions"}
)
_PROMOTION_CODE_UPDATE_FIELDS: Final = frozenset({"active", "metadata", "restrictions"})


class PromotionsMixin(FakeCore):
    """The Processor interface's coupon and promotion code calls."""

    def create_coupon(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        def create() -> JSONDict:
            self._check_known(params, _COUPON_FIELDS)
            percent_off, amount_off = params.get("percent_off"), params.get("amount_off")
            if (percent_off is None) == (amount_off is None):
                raise self._error(
                    400,
                    "Coupons require exactly one of `percent_off` or `amount_off`.",
                    code="parameter_missing",
                    param="percent_off",
                )
            if percent_off is not None and not 0 < float(percent_off) <= 100:
                raise self._error(
                    400,
                    "percent_off must be greater than 0 and at most 100.",
                    code="parameter_invalid_integer",
                    param="percent_off",
                )
            if amount_off is not None and not params.get("currency"):
                raise self._error(
                    400, "You must pass currency when passing amount_off.", code="parameter_missing", param="currency"
                )
            duration = params.get("duration", "once")
            if duration not in ("once", "repeating", "forever"):
                raise self._error(
                    400, "Invalid duration: must be one of once, repeating, or forever.", param="duration"
                )
            if duration == "repeating" and not params.get("duration_in_months"):
                raise self._error(
                    400,
                    "duration_in_months is required when duration is repeating.",
                    code="parameter_missing",
                    param="duration_in_months",
                )
            metadata = params.get("metadata") or {}
            self._check_metadata(metadata)
            coupon_id = params.get("id") or self._next_id("coupon_fake")
            if coupon_id in self._coupons:
                raise self._error(400, "Coupon already exists.", code="resource_already_exists", param="id")
            coupon = shape("coupon")
            coupon.update(
                id=coupon_id,
                created=int(self._now()),
                amount_off=amount_off,
                percent_off=percent_off,
                currency=str(params["currency"]).lower() if params.get("currency") else None,
                duration=duration,
                duration_in_months=params.get("duration_in_months") if duration == "repeating" else None,
                max_redemptions=params.get("max_redemptions"),
                redeem_by=params.get("redeem_by"),
                name=params.get("name"),
                metadata=dict(metadata),
                times_redeemed=0,
                valid=True,
            )
            self._coupons[coupon_id] = coupon
            self._emit("coupon.created", coupon)
            return coupon

        return self._run("create_coupon", {"params": params}, create, idempotency_key=idempotency_key)

    def create_promotion_code(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        def create() -> JSONDict:
            self._check_known(params, _PROMOTION_CODE_FIELDS)
            promotion = params.get("promotion") or {}
            # The current API names the coupon under `promotion`; older
            # versions took a top-level `coupon`. Accept both.
            coupon_id = promotion.get("coupon") if isinstance(promotion, dict) else None
            coupon_id = coupon_id or params.get("coupon")
            if not coupon_id:
                raise self._error(
                    400,
                    "Missing required param: promotion[coupon].",
                    code="parameter_missing",
                    param="promotion[coupon]",
                )
            if coupon_id not in self._coupons:
                raise self._error(
                    400, f"No such coupon: '{coupon_id}'", code="resource_missing", param="promotion[coupon]"
                )
            code = params.get("code")
            if code is not None and (not isinstance(code, str) or not code.strip() or len(code) > 500):
                raise self._error(400, "Invalid code.", code="parameter_invalid_string", param="code")
            active = params.get("active", True)
            if code and active and self._active_code_exists(code):
                raise self._error(
                    400,
                    f"An active promotion code with `code: {code}` already exists.",
                    code="resource_already_exists",
                    param="code",
                )
            expires_at = params.get("expires_at")
            if expires_at is not None and int(expires_at) <= self._now():
                raise self._error(400, "expires_at must be in the future.", param="expires_at")
            metadata = params.get("metadata") or {}
            self._check_metadata(metadata)
            promo = shape("promotion_code")
            restrictions = promo["restrictions"]
            restrictions.update(params.get("restrictions") or {})
            promo_id = self._next_id("promo_fake")
            promo.update(
                id=promo_id,
                created=int(self._now()),
                active=bool(active),
                code=code or f"FAKE{self._counters['promo_fake']:05d}",
                customer=params.get("customer"),
                expires_at=expires_at,
                max_redemptions=params.get("max_redemptions"),
                metadata=dict(metadata),
                promotion={"coupon": coupon_id, "type": "coupon"},
                restrictions=restrictions,
                times_redeemed=0,
            )
            self._promotion_codes[promo_id] = promo
            self._emit("promotion_code.created", promo)
            return promo

        return self._run("create_promotion_code", {"params": params}, create, idempotency_key=idempotency_key)

    def update_promotion_code(
        self, promotion_code_id: str, *, params: JSONDict, idempotency_key: str | None = None
    ) -> JSONDict:
        def update() -> JSONDict:
            promo = self._promotion_codes.get(promotion_code_id)
            if promo is None:
                raise self._missing("promotion_code", promotion_code_id)
            self._check_known(params, _PROMOTION_CODE_UPDATE_FIELDS)
            updated = copy.deepcopy(promo)
            if "active" in params:
                if params["active"] and not promo["active"] and self._active_code_exists(promo["code"]):
                    raise self._error(
                        400,
                        f"An active promotion code with `code: {promo['code']}` already exists.",
                        code="resource_already_exists",
                        param="active",
                    )
                updated["active"] = bool(params["active"])
            if "metadata" in params:
                updated["metadata"] = self._merge_metadata(updated.get("metadata") or {}, params["metadata"])
            if "restrictions" in params:
                updated["restrictions"].update(params["restrictions"] or {})
            self._promotion_codes[promotion_code_id] = updated
            previous = changed(promo, updated)
            if previous:
                self._emit("promotion_code.updated", updated, previous)
            return updated

        args = {"promotion_code_id": promotion_code_id, "params": params}
        return self._run("update_promotion_code", args, update, idempotency_key=idempotency_key)

    def _active_code_exists(self, code: str) -> bool:
        # Codes are unique among active promotion codes, case-insensitively.
        folded = code.casefold()
        return any(p["active"] and str(p["code"]).casefold() == folded for p in self._promotion_codes.values())
