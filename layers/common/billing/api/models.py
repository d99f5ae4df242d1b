"""Response bodies as the OpenAPI document declares them.

Routes serialise their own JSON; these models only document it, so the
document (and the fuzz suite that checks responses against it) states what
the API really returns.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field


def documented(model: type[BaseModel], description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


class PaymentMethod(BaseModel):
    id: str
    processor_id: str = Field(description="The processor's payment method id (pm_...)")
    customer_id: str | None
    status: str | None
    type: str | None
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    data: dict[str, Any]
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    detached_at: str | None
    inserted_at: str
    updated_at: str


class Projection(BaseModel):
    """A subscription, invoice or charge as projected from the processor."""

    id: str
    processor_id: str = Field(description="The processor's id (sub_..., in_..., ch_...)")
    customer_id: str | None
    status: str | None
    data: dict[str, Any]
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str


class Customer(BaseModel):
    id: str
    owner_type: str | None
    owner_id: str | None
    processor: str
    processor_id: str | None
    email: str | None
    name: str | None
    currency: str | None
    tax_exempt: str | None
    preferred_locale: str | None
    preferred_timezone: str | None
    metadata: dict[str, str]
    data: dict[str, Any] = Field(description="The processor object, without address, phone and shipping")
    default_payment_method_id: str | None
    lock_version: int
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str
    deleted_at: str | None
    payment_methods: list[PaymentMethod] | None = Field(None, description="With ?include=payment_methods")
    subscriptions: list[Projection] | None = Field(None, description="With ?include=subscriptions")
    invoices: list[Projection] | None = Field(None, description="With ?include=invoices")
    charges: list[Projection] | None = Field(None, description="With ?include=charges")


class CustomerList(BaseModel):
    data: list[Customer]
    next_cursor: str | None


class PaymentMethodList(BaseModel):
    data: list[PaymentMethod]
    next_cursor: str | None


class LedgerEntry(BaseModel):
    id: str
    type: str
    subject_type: str
    subject_id: str
    actor_type: str
    actor_id: str | None
    data: dict[str, Any]
    trace_id: str | None
    idempotency_key: str | None
    caused_by_webhook_event_id: str | None
    inserted_at: str


class LedgerPage(BaseModel):
    data: list[LedgerEntry]
    next_cursor: str | None
