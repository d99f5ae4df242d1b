"""Invoices and charges, listed from the projection by index (DESIGN.md
section 4): filters customer_id, status (invoices) and subscription."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import Field

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.subscriptions import listing

router = APIGatewayRouter()


class Invoice(ResponseModel):
    id: str
    processor_id: str = Field(description="The processor's invoice id (in_...)")
    customer_id: str | None
    subscription_id: str | None
    status: str | None = Field(description="draft, open, paid, uncollectible or void")
    billing_reason: str | None
    currency: str | None
    amount_due: int | None
    amount_paid: int | None
    data: dict[str, Any] = Field(description="The processor's invoice")
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str


class InvoiceList(ResponseModel):
    data: list[Invoice]
    next_cursor: str | None


class Charge(ResponseModel):
    id: str
    processor_id: str = Field(description="The processor's charge id (ch_...)")
    customer_id: str | None
    subscription_id: str | None = Field(description="Through the charge's invoice, when it names one")
    invoice_id: str | None
    status: str | None = Field(description="succeeded, pending or failed")
    currency: str | None
    amount: int | None
    data: dict[str, Any] = Field(description="The processor's charge")
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str


class ChargeList(ResponseModel):
    data: list[Charge]
    next_cursor: str | None


@router.get("/v1/invoices", summary="List invoices", tags=["invoices"],
            responses={200: success("A page of invoices, newest first"), **error_responses(422)})
def list_invoices(
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    status: Annotated[Literal["draft", "open", "paid", "uncollectible", "void"] | None, Query()] = None,
    subscription: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[InvoiceList]:
    data, next_cursor = listing.list_invoices(customer_id=customer_id, status=status, subscription=subscription,
                                              limit=limit, cursor=cursor)
    return http.respond(InvoiceList, 200, {"data": data, "next_cursor": next_cursor})


@router.get("/v1/charges", summary="List charges", tags=["invoices"],
            responses={200: success("A page of charges, newest first"), **error_responses(422)})
def list_charges(
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    subscription: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[ChargeList]:
    data, next_cursor = listing.list_charges(customer_id=customer_id, subscription=subscription, limit=limit,
                                             cursor=cursor)
    return http.respond(ChargeList, 200, {"data": data, "next_cursor": next_cursor})
