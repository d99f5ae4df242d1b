"""Subscription routes (DESIGN.md section 4): create for a customer, list and
read, and the actions (swap, cancel, resume, pause, unpause)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.subscriptions import actions, listing

router = APIGatewayRouter()

PRICE_ID = r"^price_[A-Za-z0-9_]{1,250}$"
ACTION_ERRORS = error_responses(404, 409, 422, 502)


class Subscription(ResponseModel):
    id: str
    processor_id: str = Field(description="The processor's subscription id (sub_...)")
    customer_id: str | None
    status: str | None = Field(description="incomplete, incomplete_expired, trialing, active, past_due, canceled, "
                                           "unpaid or paused")
    price_id: str | None = Field(description="The first item's price")
    product_id: str | None
    quantity: int | None
    current_period_end: int | None = Field(description="Unix seconds")
    cancel_at_period_end: bool
    trial_end: int | None = Field(description="Unix seconds")
    pause_collection: str | None = Field(description="The behavior while collection is paused, else null")
    data: dict[str, Any] = Field(description="The processor's subscription")
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str


class CreatedSubscription(Subscription):
    client_secret: str | None = Field(description="Confirm the first payment (payment_intent) or collect a payment "
                                                  "method for after the trial (setup_intent) with Stripe.js; null "
                                                  "when nothing needs confirming")
    client_secret_type: Literal["payment_intent", "setup_intent"] | None


class SubscriptionList(ResponseModel):
    data: list[Subscription]
    next_cursor: str | None


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: str = Field(pattern=PRICE_ID, examples=["price_1PgafmB7WZ01zgkW6dKueIc5"])
    quantity: StrictInt = Field(1, ge=1, le=10000)


class CreateSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1, max_length=20)
    trial_period_days: StrictInt | None = Field(None, ge=1, le=730)
    trial_end: StrictInt | None = Field(None, ge=1, description="Unix seconds, in the future")
    promotion_code: str | None = Field(None, min_length=1, max_length=500,
                                       description="A promotion code's id (promo_...) or the code itself")
    default_payment_method: str | None = Field(None, pattern=r"^pm_[A-Za-z0-9_]{1,250}$")
    payment_behavior: Literal["default_incomplete", "allow_incomplete", "error_if_incomplete",
                              "pending_if_incomplete"] = "default_incomplete"
    metadata: dict[str, Any] | None = Field(None, description="Stripe metadata rules apply")

    def new(self) -> actions.NewSubscription:
        return actions.NewSubscription(
            items=[(i.price, i.quantity) for i in self.items], trial_period_days=self.trial_period_days,
            trial_end=self.trial_end, promotion_code=self.promotion_code,
            default_payment_method=self.default_payment_method, payment_behavior=self.payment_behavior,
            metadata=dict(self.metadata or {}),
        )


class Swap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: str | None = Field(None, pattern=PRICE_ID)
    quantity: StrictInt | None = Field(None, ge=1, le=10000)
    item: str | None = Field(None, min_length=1, max_length=255,
                             description="The subscription item to change (si_...); needed with several items")
    proration_behavior: Literal["create_prorations", "always_invoice", "none"] = Field(
        description="Required: credit and charge the change on the next invoice, invoice it now, or neither")


class Cancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: StrictBool = Field(True, description="false cancels now")


class Pause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    behavior: Literal["void", "mark_uncollectible", "keep_as_draft"] = Field(
        "void", description="What happens to the invoices made while collection is paused")
    resumes_at: StrictInt | None = Field(None, ge=1, description="Unix seconds: collection resumes then")


@router.post("/v1/customers/<customer_id>/subscriptions", summary="Create a subscription", tags=["subscriptions"],
             responses={201: success("Created (client_secret when the client must confirm)"),
                        **error_responses(404, 409, 422, 502)})
def create_subscription(customer_id: str, body: CreateSubscription) -> Response[CreatedSubscription]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    return http.respond(CreatedSubscription, 201, actions.create(customer_id, body.new(), http.actor(router)))


@router.get("/v1/subscriptions", summary="List subscriptions", tags=["subscriptions"],
            responses={200: success("A page of subscriptions, newest first"), **error_responses(422)})
def list_subscriptions(
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    status: Annotated[Literal["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled",
                              "unpaid", "paused"] | None, Query()] = None,
    price: Annotated[str | None, Query(pattern=PRICE_ID)] = None,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[SubscriptionList]:
    data, next_cursor = listing.list_subscriptions(customer_id=customer_id, status=status, price=price, limit=limit,
                                                   cursor=cursor)
    return http.respond(SubscriptionList, 200, {"data": data, "next_cursor": next_cursor})


@router.get("/v1/subscriptions/<subscription_id>", summary="A subscription", tags=["subscriptions"],
            responses={200: success("The subscription"), **error_responses(404)})
def get_subscription(subscription_id: str) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    return http.respond(Subscription, 200, listing.get_subscription(subscription_id))


@router.post("/v1/subscriptions/<subscription_id>/swap", summary="Change the price and/or quantity",
             tags=["subscriptions"], responses={200: success("Swapped"), **ACTION_ERRORS})
def swap_subscription(subscription_id: str, body: Swap) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    swapped = actions.swap(subscription_id, price=body.price, quantity=body.quantity, item=body.item,
                           proration_behavior=body.proration_behavior, actor=http.actor(router))
    return http.respond(Subscription, 200, swapped)


@router.post("/v1/subscriptions/<subscription_id>/cancel", summary="Cancel now or at period end",
             tags=["subscriptions"], responses={200: success("Canceled, or set to cancel"), **ACTION_ERRORS})
def cancel_subscription(subscription_id: str, body: Annotated[Cancel | None, Body()] = None
                        ) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    at_period_end = (body or Cancel()).at_period_end
    return http.respond(Subscription, 200, actions.cancel(subscription_id, at_period_end=at_period_end,
                                                          actor=http.actor(router)))


@router.post("/v1/subscriptions/<subscription_id>/resume", summary="Undo a cancel at period end",
             tags=["subscriptions"], responses={200: success("Resumed"), **ACTION_ERRORS})
def resume_subscription(subscription_id: str) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    return http.respond(Subscription, 200, actions.resume(subscription_id, actor=http.actor(router)))


@router.post("/v1/subscriptions/<subscription_id>/pause", summary="Pause collection", tags=["subscriptions"],
             responses={200: success("Collection paused"), **ACTION_ERRORS})
def pause_subscription(subscription_id: str, body: Annotated[Pause | None, Body()] = None
                       ) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    pause = body or Pause()
    return http.respond(Subscription, 200, actions.pause(subscription_id, behavior=pause.behavior,
                                                         resumes_at=pause.resumes_at, actor=http.actor(router)))


@router.post("/v1/subscriptions/<subscription_id>/unpause", summary="Resume collection", tags=["subscriptions"],
             responses={200: success("Collection resumed"), **ACTION_ERRORS})
def unpause_subscription(subscription_id: str) -> Response[Subscription]:
    subscription_id = http.path_param(router, "subscription_id", subscription_id)
    return http.respond(Subscription, 200, actions.unpause(subscription_id, actor=http.actor(router)))
