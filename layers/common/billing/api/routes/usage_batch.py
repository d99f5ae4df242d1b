"""POST /v1/usage/batch (DESIGN.md section 4): up to 100 usage events in one
request, each checked and accepted on its own (billing.metering.batch), the
results in request order.

The body's envelope is checked here (an object with an `events` array: 413
over 100 events, 422 when empty); each event's shape is checked against
the same model as PUT /v1/usage/{identifier}'s body, plus its identifier,
so one malformed event is a 422 in its own result, not for the request.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from billing.api import http
from billing.api.errors import field_errors
from billing.api.models import ResponseModel
from billing.api.routes.usage import MeterEvent, UsageReport
from billing.api.schemas import error_responses, success
from billing.core.errors import ValidationFailed
from billing.metering import batch

router = APIGatewayRouter()

IDENTIFIER = r"^[A-Za-z0-9_\-.:]{1,100}$"


class BatchEvent(UsageReport):
    """One event of a batch: PUT /v1/usage/{identifier}'s body, and its identifier."""

    identifier: str = Field(min_length=1, max_length=100, pattern=IDENTIFIER,
                            description="The event's idempotency key (as the PUT route's path parameter)")


class UsageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each event is checked on its own (an invalid one is a 422 in its own
    # result), so the envelope takes any JSON value per event.
    events: list[Any] = Field(description=f"1 to {batch.MAX_EVENTS} usage events (more is a 413), each the body "
                                          "of PUT /v1/usage/{identifier} with its `identifier`")


class BatchErrorDetail(ResponseModel):
    type: str
    message: str
    details: dict[str, Any]


class BatchAccepted(ResponseModel):
    identifier: str
    status: Literal[200, 202] = Field(description="202 accepted now, 200 the same event again (a replay)")
    event: MeterEvent


class BatchRefused(ResponseModel):
    identifier: str | None = Field(description="As sent; null if the event gave none")
    status: int = Field(description="The status PUT /v1/usage/{identifier} would have answered: 404, 409, 422, "
                                    "or 503 (sent again, it may be accepted)")
    error: BatchErrorDetail


class BatchResults(ResponseModel):
    data: list[BatchAccepted | BatchRefused] = Field(description="One result per event, in request order")


def _entry(raw: Any) -> batch.Entry:
    identifier = raw.get("identifier") if isinstance(raw, dict) else None
    identifier = identifier if isinstance(identifier, str) else None
    if not isinstance(raw, dict):
        return batch.Entry(None, refused=ValidationFailed("each event must be a JSON object",
                                                          {"event": "not an object"}))
    try:
        event = BatchEvent.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(list(exc.errors()))
        names = ", ".join(sorted({e["field"] for e in errors}))
        return batch.Entry(identifier, refused=ValidationFailed(f"invalid event: {names}", {"errors": errors}))
    return batch.Entry(event.identifier, usage=event.usage())


@router.post("/v1/usage/batch", summary="Report up to 100 usage events in one request", tags=["usage"],
             responses={207: success("One result per event, in request order"),
                        **error_responses(400, 413, 422)})
def post_usage_batch(body: UsageBatch) -> Response[BatchResults]:
    batch.check_size(len(body.events))
    results = batch.accept_all([_entry(raw) for raw in body.events], http.actor(router))
    return http.respond(BatchResults, 207, {"data": results})
