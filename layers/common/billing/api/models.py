"""Response bodies: each route returns `Response[Model]` and hands back the
domain's dict; Powertools validates it against that model and serialises it
through the model, and the OpenAPI document states the same model, so the
document cannot drift from the bodies.

Every response model refuses fields it does not declare: a domain function
that starts returning a new field fails loudly (a 500 `internal_error`,
billing.api.errors) until the model, hence the document, declares it.

The customer's resources live here; each other route module keeps the models
only it returns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ResponseModel(BaseModel):
    """The base of every response body: no undeclared field gets through."""

    model_config = ConfigDict(extra="forbid")


def _absent(value: Any) -> bool:
    return value is None


class PaymentMethod(ResponseModel):
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


class Projection(ResponseModel):
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


class Customer(ResponseModel):
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
    # Embedded only on request: absent from the body (not null) otherwise.
    payment_methods: list[PaymentMethod] | None = Field(None, exclude_if=_absent,
                                                        description="With ?include=payment_methods")
    subscriptions: list[Projection] | None = Field(None, exclude_if=_absent, description="With ?include=subscriptions")
    invoices: list[Projection] | None = Field(None, exclude_if=_absent, description="With ?include=invoices")
    charges: list[Projection] | None = Field(None, exclude_if=_absent, description="With ?include=charges")


class CustomerList(ResponseModel):
    data: list[Customer]
    next_cursor: str | None


class PaymentMethodList(ResponseModel):
    data: list[PaymentMethod]
    next_cursor: str | None


class LedgerEntry(ResponseModel):
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


class LedgerPage(ResponseModel):
    data: list[LedgerEntry]
    next_cursor: str | None
