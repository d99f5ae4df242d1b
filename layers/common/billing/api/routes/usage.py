"""Usage routes (DESIGN.md section 4, Usage): report, read, list, retry,
cancel. The batch route is billing.api.routes.usage_batch, the customer's
usage summary billing.api.routes.usage_summary."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.metering import cancel, intake, lifecycle, outbox, queries

router = APIGatewayRouter()

# Printable, no leading or trailing space: what a Stripe meter's event_name can be.
EVENT_NAME = r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
# Values stay exact in every JSON parser (and in Stripe's string payload).
MAX_VALUE = 2**53 - 1


class StripeError(ResponseModel):
    """Derived from Stripe's answer; never its raw payload."""

    type: str
    code: str | None
    message: str | None = Field(description="At most 512 characters")


class MeterEvent(ResponseModel):
    id: str
    identifier: str
    customer_id: str
    stripe_customer_id: str
    event_name: str
    value: int
    occurred_at: str
    operation_id: str | None
    stripe_status: Literal["pending", "reported", "failed", "canceled"]
    reported_at: str | None
    canceled_at: str | None
    stripe_error: StripeError | None
    attempts: int
    stripe_identifier: str = Field(description="The identifier Stripe knows the event by: `identifier`, or a "
                                   "derived one after a retry of an event Stripe rejected (a meter error)")
    inserted_at: str
    updated_at: str


class MeterEventList(ResponseModel):
    data: list[MeterEvent]
    next_cursor: str | None


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=255, examples=["Team"])
    id: str = Field(min_length=1, max_length=255, examples=["42"])


class UsageReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_name: str = Field(min_length=1, max_length=100, pattern=EVENT_NAME, examples=["api_requests"],
                            description="The event name of the Stripe meter")
    value: StrictInt = Field(ge=0, le=MAX_VALUE, description="A whole number, 0 or more")
    timestamp: StrictInt | StrictStr | None = Field(
        None, description="When the usage happened: unix seconds or ISO 8601 with an offset; default now. "
                          "At most 35 days old and 5 minutes ahead.")
    customer_id: str | None = Field(None, min_length=1, max_length=255)
    stripe_customer_id: str | None = Field(None, min_length=1, max_length=255)
    owner: Owner | None = None
    operation_id: str | None = Field(None, min_length=1, max_length=255,
                                     description="The caller's own reference, kept with the event")

    @model_validator(mode="after")
    def _one_customer(self) -> UsageReport:
        given = [n for n in ("customer_id", "stripe_customer_id", "owner") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of customer_id, stripe_customer_id or owner")
        return self

    def usage(self) -> intake.UsageInput:
        return intake.UsageInput(
            event_name=self.event_name, value=self.value, timestamp=self.timestamp, customer_id=self.customer_id,
            stripe_customer_id=self.stripe_customer_id, owner_type=self.owner.type if self.owner else None,
            owner_id=self.owner.id if self.owner else None, operation_id=self.operation_id,
        )


@router.put("/v1/usage/<identifier>", summary="Report usage (delivered to Stripe Meters asynchronously)",
            tags=["usage"], responses={200: success("Replay of the same request: the existing event"),
                                       202: success("Accepted: pending delivery to Stripe"),
                                       **error_responses(400, 404, 409, 422)})
def put_usage(identifier: str, body: UsageReport) -> Response[MeterEvent]:
    row, created = intake.accept(http.path_param(router, "identifier", identifier), body.usage(), http.actor(router))
    return http.respond(MeterEvent, 202 if created else 200, row)


@router.get("/v1/usage/<identifier>", summary="A usage event", tags=["usage"],
            responses={200: success("The usage event"), **error_responses(404, 422)})
def get_usage(identifier: str) -> Response[MeterEvent]:
    return http.respond(MeterEvent, 200, outbox.get(http.path_param(router, "identifier", identifier)))


@router.get("/v1/usage", summary="List usage events by status (failed: the dead-letter view) or customer",
            tags=["usage"], responses={200: success("A page, newest first"),
                                       **error_responses(422)})
def list_usage(
    status: Annotated[Literal["pending", "reported", "failed", "canceled"] | None, Query()] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[MeterEventList]:
    data, next_cursor = queries.list_usage(status=status, customer_id=customer_id, limit=limit, cursor=cursor)
    return http.respond(MeterEventList, 200, {"data": data, "next_cursor": next_cursor})


@router.post("/v1/usage/<identifier>/retry", summary="Send a failed usage event again", tags=["usage"],
             responses={202: success("Pending again"), **error_responses(404, 409, 422)})
def retry_usage(identifier: str) -> Response[MeterEvent]:
    identifier = http.path_param(router, "identifier", identifier)
    return http.respond(MeterEvent, 202, lifecycle.retry(identifier, http.actor(router)))


@router.post("/v1/usage/<identifier>/cancel", summary="Cancel a usage event (pending: never sent; reported: "
             "through Stripe's meter event adjustment, within 24 hours)", tags=["usage"],
             responses={200: success("Canceled (or already canceled)"), **error_responses(404, 409, 422, 502)})
def cancel_usage(identifier: str) -> Response[MeterEvent]:
    identifier = http.path_param(router, "identifier", identifier)
    return http.respond(MeterEvent, 200, cancel.cancel(identifier, http.actor(router)))
