"""What a host app asks about an owner on every request (its billing and its
entitlements), and the customer's ways to Stripe's pages: Checkout, the
customer portal, and the sync for the redirect back (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from billing.api import http
from billing.api.models import Customer, ResponseModel
from billing.api.routes.subscriptions import Item
from billing.api.schemas import error_responses, success
from billing.subscriptions import sessions, summary
from billing.webhooks import fetched

router = APIGatewayRouter()

URL = r"^https?://[^\s]+$"


class BillingSubscription(ResponseModel):
    id: str = Field(description="The processor's subscription id (sub_...)")
    status: str | None
    price_id: str | None
    product_id: str | None
    product_name: str | None
    quantity: int | None
    current_period_end: int | None = Field(description="Unix seconds")
    cancel_at_period_end: bool
    trial_end: int | None = Field(description="Unix seconds")
    collection_paused: bool


class Billing(ResponseModel):
    customer: Customer
    subscriptions: list[BillingSubscription] = Field(description="Current subscriptions (not ended)")
    entitlements: list[str] = Field(description="Active entitlement feature lookup keys")
    delinquent: bool = Field(description="An invoice payment failed (the customer is delinquent at Stripe, or a "
                                         "subscription is past due or unpaid)")


class Entitlements(ResponseModel):
    features: list[str] = Field(description="Active entitlement feature lookup keys (Stripe Entitlements)")


class CheckoutSession(ResponseModel):
    id: str = Field(description="The Checkout Session id (cs_...)")
    url: str = Field(description="Send the customer here")
    expires_at: int = Field(description="Unix seconds")


class PortalSession(ResponseModel):
    id: str = Field(description="The portal session id (bps_...)")
    url: str = Field(description="Send the customer here")


class CreateCheckoutSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["subscription", "payment", "setup"] = "subscription"
    items: list[Item] = Field(default_factory=list, max_length=20, description="Not in setup mode")
    success_url: str = Field(max_length=2048, pattern=URL,
                             description="Where Stripe sends the customer after paying; may hold "
                                         "{CHECKOUT_SESSION_ID}")
    cancel_url: str | None = Field(None, max_length=2048, pattern=URL)
    allow_promotion_codes: StrictBool = False
    trial_period_days: StrictInt | None = Field(None, ge=1, le=730, description="Subscription mode only")


class PortalFlow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["payment_method_update", "subscription_cancel", "subscription_update"]
    subscription: str | None = Field(None, min_length=1, max_length=255,
                                     description="Required by subscription_cancel and subscription_update")


class CreatePortalSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: str | None = Field(None, max_length=2048, pattern=URL)
    flow: PortalFlow | None = Field(None, description="Deep-link into one flow of the portal")


@router.get("/v1/owners/<owner_type>/<owner_id>/billing", summary="The owner's billing (two reads)",
            tags=["billing"], responses={200: success("Customer, subscriptions, entitlements, delinquent"),
                                         **error_responses(404, 422)})
def owner_billing(owner_type: str, owner_id: str) -> Response[Billing]:
    owner = (http.path_param(router, "owner_type", owner_type), http.path_param(router, "owner_id", owner_id))
    return http.respond(Billing, 200, summary.billing(*owner))


@router.get("/v1/owners/<owner_type>/<owner_id>/entitlements", summary="The owner's active features (one read)",
            tags=["billing"], responses={200: success("Feature lookup keys"), **error_responses(404, 422)})
def owner_entitlements(owner_type: str, owner_id: str) -> Response[Entitlements]:
    owner = (http.path_param(router, "owner_type", owner_type), http.path_param(router, "owner_id", owner_id))
    return http.respond(Entitlements, 200, summary.entitlements(*owner))


@router.post("/v1/customers/<customer_id>/checkout-sessions", summary="Open Stripe Checkout", tags=["billing"],
             responses={201: success("Created"), **error_responses(404, 409, 422, 502)})
def create_checkout_session(customer_id: str, body: CreateCheckoutSession) -> Response[CheckoutSession]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    request = sessions.CheckoutRequest(
        mode=body.mode, success_url=body.success_url, cancel_url=body.cancel_url,
        items=tuple((i.price, i.quantity) for i in body.items), allow_promotion_codes=body.allow_promotion_codes,
        trial_period_days=body.trial_period_days)
    return http.respond(CheckoutSession, 201, sessions.checkout(customer_id, request))


@router.post("/v1/customers/<customer_id>/portal-sessions", summary="Open the Stripe customer portal",
             tags=["billing"], responses={201: success("Created"), **error_responses(404, 409, 422, 502)})
def create_portal_session(customer_id: str, body: Annotated[CreatePortalSession | None, Body()] = None
                          ) -> Response[PortalSession]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    request = body or CreatePortalSession()
    flow = request.flow
    return http.respond(PortalSession, 201, sessions.portal(
        customer_id, return_url=request.return_url, flow=flow.type if flow else None,
        subscription_id=flow.subscription if flow else None))


@router.post("/v1/customers/<customer_id>/sync", summary="Re-fetch the customer from Stripe now",
             tags=["billing"], responses={200: success("The customer, with payment methods and subscriptions",
                                                        etag=True), **error_responses(404, 409, 502)})
def sync_customer(customer_id: str) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    return http.versioned(Customer, 200, fetched.sync_customer(customer_id, http.actor(router)))
