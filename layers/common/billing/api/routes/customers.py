"""Customer, payment-method and ledger routes (DESIGN.md section 4)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.api import http
from billing.api.fields import Currency, Cursor, PageSize
from billing.api.models import Customer, CustomerList, LedgerPage, PaymentMethod, PaymentMethodList
from billing.api.schemas import error_responses, success
from billing.customers import create, payment_methods, records, update
from billing.customers.keys import CustomerAttrs

router = APIGatewayRouter()

EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
TIMEZONE = re.compile(r"^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$")


class CustomerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=512, examples=["billing@example.com"])
    name: str | None = Field(None, min_length=1, max_length=256)
    currency: Currency | None = Field(None, description="ISO 4217, lower case", examples=["usd"])
    tax_exempt: Literal["none", "exempt", "reverse"] | None = None
    preferred_locale: str | None = Field(None, max_length=35, examples=["en-US"])
    preferred_timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    metadata: dict[str, Any] | None = Field(None, description="Stripe metadata rules apply")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL.match(v):
            raise ValueError("not an email address")
        return v

    @field_validator("preferred_locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        if v is not None and not LOCALE.match(v):
            raise ValueError("must be a BCP 47 tag like en-US")
        return v

    @field_validator("preferred_timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        if v is not None and not TIMEZONE.match(v):
            raise ValueError("must be an IANA time zone like Europe/Berlin")
        return v

    def attrs(self) -> CustomerAttrs:
        return CustomerAttrs(
            email=self.email, name=self.name, currency=self.currency, tax_exempt=self.tax_exempt,
            preferred_locale=self.preferred_locale, preferred_timezone=self.preferred_timezone,
            metadata=dict(self.metadata or {}),
        )


class CreateCustomer(CustomerFields):
    owner_type: str = Field(min_length=1, max_length=255)
    owner_id: str = Field(min_length=1, max_length=255)


class PatchCustomer(CustomerFields):
    lock_version: int | None = Field(None, ge=1)


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line1: str | None = Field(None, max_length=200)
    line2: str | None = Field(None, max_length=200)
    city: str | None = Field(None, max_length=200)
    state: str | None = Field(None, max_length=200)
    postal_code: str | None = Field(None, max_length=20)
    country: str = Field(min_length=1, max_length=2)


class TaxLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: Address


class PaymentMethodRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method_id: str = Field(min_length=4, max_length=255, examples=["pm_card_visa"])


CUSTOMER_ERRORS = error_responses(400, 404, 409, 422, 502)


@router.put("/v1/owners/<owner_type>/<owner_id>/customer", summary="Fetch or create the owner's customer",
            tags=["customers"], responses={200: success("Existing customer", etag=True),
                                           201: success("Created", etag=True), **CUSTOMER_ERRORS})
def fetch_or_create(owner_type: str, owner_id: str,
                    body: Annotated[CustomerFields | None, Body()] = None) -> Response[Customer]:
    attrs = (body or CustomerFields()).attrs()
    owner = (http.path_param(router, "owner_type", owner_type), http.path_param(router, "owner_id", owner_id))
    customer, created = create.fetch_or_create(*owner, attrs, http.actor(router))
    return http.versioned(Customer, 201 if created else 200, customer)


@router.post("/v1/customers", summary="Create a customer (always calls the processor)", tags=["customers"],
             responses={201: success("Created", etag=True), **CUSTOMER_ERRORS})
def create_customer(body: CreateCustomer) -> Response[Customer]:
    customer = create.create(body.owner_type, body.owner_id, body.attrs(), http.actor(router))
    return http.versioned(Customer, 201, customer)


@router.get("/v1/customers/<customer_id>", summary="A customer", tags=["customers"],
            responses={200: success("The customer", etag=True), **error_responses(404, 422)})
def get_customer(customer_id: str,
                 include: Annotated[str | None, Query(description="payment_methods,subscriptions,invoices,charges")]
                 = None) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    body = records.get(customer_id, records.parse_includes(include))
    return http.versioned(Customer, 200, body)


@router.get("/v1/customers", summary="List customers", tags=["customers"],
            responses={200: success("A page of customers"), **error_responses(422)})
def list_customers(
    owner_type: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    owner_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    email: Annotated[str | None, Query(min_length=3, max_length=512)] = None,
    currency: Annotated[str | None, Query(pattern="^[a-z]{3}$")] = None,
    processor_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    include_deleted: Annotated[bool, Query()] = False,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[CustomerList]:
    filters = {k: v for k, v in {"owner_type": owner_type, "owner_id": owner_id, "email": email,
                                 "currency": currency, "processor_id": processor_id}.items() if v is not None}
    data, next_cursor = records.list_customers(filters, limit=limit, cursor=cursor,
                                                 include_deleted=include_deleted)
    return http.respond(CustomerList, 200, {"data": data, "next_cursor": next_cursor})


@router.patch("/v1/customers/<customer_id>", summary="Update a customer (Stripe first for the fields it holds)",
              tags=["customers"],
              responses={200: success("Updated", etag=True), **error_responses(404, 409, 412, 422, 502)})
def patch_customer(customer_id: str, body: PatchCustomer) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    expected = http.if_match(router)
    if expected is None:
        expected = body.lock_version
    changes = body.model_dump(exclude_unset=True, exclude={"lock_version"})
    updated = update.update(customer_id, changes, expected_version=expected, actor=http.actor(router))
    return http.versioned(Customer, 200, updated)


@router.put("/v1/customers/<customer_id>/tax-location", summary="Set the tax location (validated now)",
            tags=["customers"],
            responses={200: success("Updated", etag=True), **error_responses(404, 409, 422, 502)})
def put_tax_location(customer_id: str, body: TaxLocation) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    address = body.address.model_dump(exclude_none=True)
    return http.versioned(Customer, 200, update.update_tax_location(customer_id, address, http.actor(router)))


@router.put("/v1/customers/<customer_id>/default-payment-method", summary="Set the default payment method",
            tags=["payment methods"],
            responses={200: success("Updated", etag=True), **error_responses(404, 409, 422, 502)})
def put_default_payment_method(customer_id: str, body: PaymentMethodRef) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    customer = payment_methods.set_default(customer_id, body.payment_method_id, http.actor(router))
    return http.versioned(Customer, 200, customer)


@router.post("/v1/customers/<customer_id>/payment-methods", summary="Attach a payment method",
             tags=["payment methods"], responses={200: success("Already attached (same card)"),
                                                  201: success("Attached"), **error_responses(404, 409, 422, 502)})
def attach_payment_method(customer_id: str, body: PaymentMethodRef) -> Response[PaymentMethod]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    pm, created = payment_methods.attach(customer_id, body.payment_method_id, http.actor(router))
    return http.respond(PaymentMethod, 201 if created else 200, pm)


@router.get("/v1/customers/<customer_id>/payment-methods", summary="Attached payment methods",
            tags=["payment methods"],
            responses={200: success("Attached payment methods"), **error_responses(404)})
def list_payment_methods(customer_id: str) -> Response[PaymentMethodList]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    return http.respond(PaymentMethodList, 200, {"data": payment_methods.list_for(customer_id), "next_cursor": None})


@router.delete("/v1/customers/<customer_id>/payment-methods/<payment_method_id>", summary="Detach",
               tags=["payment methods"],
               responses={200: success("Detached"), **error_responses(404, 502)})
def detach_payment_method(customer_id: str, payment_method_id: str) -> Response[PaymentMethod]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    payment_method_id = http.path_param(router, "payment_method_id", payment_method_id)
    return http.respond(PaymentMethod, 200, payment_methods.detach(customer_id, payment_method_id, http.actor(router)))


@router.delete("/v1/customers/<customer_id>", summary="Soft-delete (mirrored to the processor)",
               tags=["customers"], responses={200: success("Deleted", etag=True), **error_responses(404, 502)})
def delete_customer(customer_id: str) -> Response[Customer]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    return http.versioned(Customer, 200, update.delete(customer_id, http.actor(router)))


@router.get("/v1/customers/<customer_id>/events", summary="The customer's ledger, newest first",
            tags=["customers"], responses={200: success("Ledger rows"), **error_responses(404, 422)})
def customer_events(customer_id: str,
                    limit: PageSize = 50,
                    cursor: Cursor = None) -> Response[LedgerPage]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    data, next_cursor = records.events(customer_id, limit=limit, cursor=cursor)
    return http.respond(LedgerPage, 200, {"data": data, "next_cursor": next_cursor})
