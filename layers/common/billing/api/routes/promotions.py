"""Coupon and promotion-code routes (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from billing.api import http
from billing.api.fields import Currency, Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.core.errors import ValidationFailed
from billing.promotions import codes as promotions
from billing.promotions import coupons, listing

router = APIGatewayRouter()

CODE_PATTERN = r"^[A-Za-z0-9-]+$"
COUPON_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
Percent = Annotated[float, Field(strict=True, gt=0, le=100, description="0 < percent_off <= 100, two decimals")]


# -- response bodies -------------------------------------------------------------------


class Coupon(ResponseModel):
    id: str
    processor: str
    processor_id: str
    name: str | None
    percent_off: float | None
    amount_off: int | None
    currency: str | None
    duration: str | None
    duration_in_months: int | None
    valid: bool | None
    max_redemptions: int | None
    times_redeemed: int | None
    redeem_by: int | None = Field(description="Unix seconds")
    metadata: dict[str, str]
    data: dict[str, Any] = Field(description="The processor's coupon")
    lock_version: int
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str
    deleted_at: str | None


class PromotionCode(ResponseModel):
    id: str
    processor: str
    processor_id: str
    code: str | None
    active: bool | None
    coupon_id: str | None
    stripe_customer_id: str | None = Field(description="The one processor customer who may redeem it, if any")
    max_redemptions: int | None
    times_redeemed: int | None
    expires_at: int | None = Field(description="Unix seconds")
    metadata: dict[str, str]
    data: dict[str, Any] = Field(description="The processor's promotion code")
    lock_version: int
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str


class PromotionCodeList(ResponseModel):
    data: list[PromotionCode]
    next_cursor: str | None


class PromotionCodeCheck(ResponseModel):
    valid: bool
    reason: Literal["not_found", "inactive", "expired", "max_redemptions_reached", "coupon_missing",
                    "customer_mismatch"] | None = Field(description="The first reason, in this order, or null")


# -- request bodies --------------------------------------------------------------------


class CreateCoupon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=200, pattern=COUPON_ID_PATTERN,
                           description="Your own id for the coupon; the processor makes one if absent")
    name: str | None = Field(None, min_length=1, max_length=40)
    percent_off: Percent | None = None
    amount_off: StrictInt | None = Field(None, ge=1, le=10**12, description="In the currency's minor unit")
    currency: Currency | None = Field(None, description="ISO 4217, lower case; required with amount_off",
                                      examples=["usd"])
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_in_months: StrictInt | None = Field(None, ge=1, le=1200, description="Only with duration=repeating")
    max_redemptions: StrictInt | None = Field(None, ge=1, le=10**9)
    redeem_by: StrictInt | None = Field(None, ge=1, le=coupons.MAX_TIMESTAMP, description="Unix seconds, future")
    metadata: dict[str, Any] | None = Field(None, description="Stripe metadata rules apply")

    def new(self) -> coupons.NewCoupon:
        return coupons.NewCoupon(
            percent_off=self.percent_off, amount_off=self.amount_off, currency=self.currency,
            duration=self.duration, duration_in_months=self.duration_in_months,
            max_redemptions=self.max_redemptions, redeem_by=self.redeem_by, metadata=dict(self.metadata or {}),
            name=self.name, id=self.id,
        )


class CreatePromotionCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=500, pattern=CODE_PATTERN, examples=["SUMMER25"],
                      description="Letters, digits and dashes; unique among active codes, ignoring case")
    coupon: str = Field(min_length=1, max_length=255, description="The coupon's id")
    active: StrictBool = True
    max_redemptions: StrictInt | None = Field(None, ge=1, le=10**9)
    expires_at: StrictInt | None = Field(None, ge=1, le=coupons.MAX_TIMESTAMP, description="Unix seconds, future")
    metadata: dict[str, Any] | None = Field(None, description="Stripe metadata rules apply")
    customer_id: str | None = Field(None, min_length=1, max_length=255,
                                    description="Restrict the code to this customer (our customer id)")

    def new(self) -> promotions.NewPromotionCode:
        return promotions.NewPromotionCode(
            code=self.code, coupon=self.coupon, active=self.active, max_redemptions=self.max_redemptions,
            expires_at=self.expires_at, metadata=dict(self.metadata or {}), customer_id=self.customer_id,
        )


class PatchPromotionCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: StrictBool | None = None
    metadata: dict[str, Any] | None = Field(None, description="Merged; a key set to \"\" or null is removed")
    lock_version: StrictInt | None = Field(None, ge=1, description="Or send If-Match")


class CheckPromotionCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(None, min_length=1, max_length=255, description="Check for this customer")


# -- coupons ---------------------------------------------------------------------------


@router.post("/v1/coupons", summary="Create a coupon (on the processor, then projected)", tags=["coupons"],
             responses={201: success("Created (or recorded by its webhook first, and merged)", etag=True),
                        **error_responses(400, 409, 422, 502)})
def create_coupon(body: CreateCoupon) -> Response[Coupon]:
    return http.versioned(Coupon, 201, coupons.create(body.new(), http.actor(router)))


@router.get("/v1/coupons/<coupon_id>", summary="A coupon", tags=["coupons"],
            responses={200: success("The coupon", etag=True), **error_responses(404)})
def get_coupon(coupon_id: str) -> Response[Coupon]:
    return http.versioned(Coupon, 200, coupons.get(http.path_param(router, "coupon_id", coupon_id)))


# -- promotion codes ------------------------------------------------------------------


@router.post("/v1/promotion-codes", summary="Create a promotion code (on the processor, then projected)",
             tags=["promotion codes"],
             responses={201: success("Created (or recorded by its webhook first, and merged)", etag=True),
                        **error_responses(400, 404, 409, 422, 502)})
def create_promotion_code(body: CreatePromotionCode) -> Response[PromotionCode]:
    return http.versioned(PromotionCode, 201, promotions.create(body.new(), http.actor(router)))


@router.get("/v1/promotion-codes", summary="List promotion codes", tags=["promotion codes"],
            responses={200: success("A page of promotion codes"), **error_responses(422)})
def list_promotion_codes(
    active: Annotated[bool | None, Query()] = None,
    code: Annotated[str | None, Query(min_length=1, max_length=500, pattern=CODE_PATTERN,
                                      description="Matched ignoring case")] = None,
    coupon: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    sort: Annotated[Literal["expires_at", "times_redeemed"], Query(
        description="Not applied with `code` (rows of one code come in index order)")] = "expires_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[PromotionCodeList]:
    data, next_cursor = listing.list_codes(active=active, code=code, coupon=coupon, sort=sort, order=order,
                                              limit=limit, cursor=cursor)
    return http.respond(PromotionCodeList, 200, {"data": data, "next_cursor": next_cursor})


@router.get("/v1/promotion-codes/<promotion_code>", summary="A promotion code (by its id)",
            tags=["promotion codes"],
            responses={200: success("The promotion code", etag=True), **error_responses(404)})
def get_promotion_code(promotion_code: str) -> Response[PromotionCode]:
    return http.versioned(PromotionCode, 200, promotions.get(http.path_param(router, "promotion_code", promotion_code)))


@router.patch("/v1/promotion-codes/<promotion_code>", summary="Activate, deactivate or set metadata (by id)",
              tags=["promotion codes"],
              responses={200: success("Updated", etag=True), **error_responses(400, 404, 409, 412, 422, 502)})
def patch_promotion_code(promotion_code: str, body: PatchPromotionCode) -> Response[PromotionCode]:
    promotion_code_id = http.path_param(router, "promotion_code", promotion_code)
    expected = http.if_match(router)
    if expected is None:
        expected = body.lock_version
    updated = promotions.update(promotion_code_id, active=body.active, metadata_update=body.metadata,
                                expected_version=expected, actor=http.actor(router))
    return http.versioned(PromotionCode, 200, updated)


@router.post("/v1/promotion-codes/<promotion_code>/check", summary="Can this code be redeemed? (by code)",
             tags=["promotion codes"],
             responses={200: success("valid, or the first reason it is not"),
                        **error_responses(400, 404, 422)})
def check_promotion_code(
    promotion_code: str,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255,
                                             description="Check for this customer (or give it in the body)")]
    = None,
    body: Annotated[CheckPromotionCode | None, Body()] = None,
) -> Response[PromotionCodeCheck]:
    from_body = body.customer_id if body is not None else None
    if customer_id is not None and from_body is not None and customer_id != from_body:
        raise ValidationFailed("customer_id differs between the query and the body", {"customer_id": "conflict"})
    code = http.path_param(router, "promotion_code", promotion_code)
    return http.respond(PromotionCodeCheck, 200, listing.check(code, customer_id or from_body))
