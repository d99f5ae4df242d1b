"""GET /v1/customers/{id}/usage-summary (DESIGN.md section 4): Stripe's meter
event summaries for a period and meter, beside the local counts of the
customer's pending and failed events of that name (billing.metering.summary)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import Field

from billing.api import http
from billing.api.models import ResponseModel
from billing.api.routes.usage import EVENT_NAME
from billing.api.schemas import error_responses, success
from billing.metering import summary

router = APIGatewayRouter()


class MeterEventSummary(ResponseModel):
    start: str
    end: str
    aggregated_value: float


class StripeSide(ResponseModel):
    meter_id: str = Field(description="The Stripe meter of the event name (mtr_...)")
    aggregated_value: float = Field(description="What Stripe counted for the period: the sum of its summaries")
    summaries: list[MeterEventSummary]


class Tally(ResponseModel):
    count: int
    value: int = Field(description="The sum of the events' values")


class LocalSide(ResponseModel):
    pending: Tally = Field(description="Accepted, not yet in Stripe's figure")
    failed: Tally = Field(description="Refused by Stripe: never in its figure (see GET /v1/usage?status=failed)")
    complete: bool = Field(description="False if the pending count stopped at its read budget (a backlog)")


class UsageSummary(ResponseModel):
    customer_id: str
    stripe_customer_id: str
    event_name: str
    start: str
    end: str
    stripe: StripeSide
    local: LocalSide


@router.get("/v1/customers/<customer_id>/usage-summary", tags=["usage"],
            summary="Stripe's meter event summaries for a period, beside the local pending and failed counts",
            responses={200: success("The summary"), **error_responses(404, 422, 502)})
def get_usage_summary(
    customer_id: str,
    event_name: Annotated[str, Query(min_length=1, max_length=100, pattern=EVENT_NAME)],
    start: Annotated[str, Query(min_length=1, max_length=40,
                                description="Unix seconds or ISO 8601, on a minute boundary (inclusive)")],
    end: Annotated[str, Query(min_length=1, max_length=40,
                              description="Unix seconds or ISO 8601, on a minute boundary (exclusive)")],
) -> Response[UsageSummary]:
    customer_id = http.path_param(router, "customer_id", customer_id)
    body = summary.usage_summary(customer_id, event_name=event_name, start=summary.parse_time(start, "start"),
                                 end=summary.parse_time(end, "end"))
    return http.respond(UsageSummary, 200, body)
