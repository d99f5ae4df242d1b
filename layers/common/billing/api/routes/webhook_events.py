"""Webhook event routes for operators (DESIGN.md section 4): one event's
processing state, the failed (or deferred) ones, replay.

Responses never carry the raw body: it holds the customer's personal data
(email, name, address) and Stripe keeps every event, retrievable by id.

POST /v1/webhooks/stripe is served by the webhook function, not this one;
`openapi_paths()` describes it so the API's one OpenAPI document covers
every route of the deployment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, Field

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.webhooks import store

router = APIGatewayRouter()


class EventError(ResponseModel):
    type: str
    code: str | None = None
    message: str = Field(max_length=512)


class WebhookEvent(ResponseModel):
    id: str = Field(examples=["evt_1Pgc76B7WZ01zgkWwyRHS12y"])
    type: str = Field(examples=["customer.updated"])
    created: int = Field(description="Stripe's `created`, unix seconds")
    livemode: bool | None
    object_id: str | None = Field(description="data.object.id, when the event has an object")
    status: Literal["received", "processed", "ignored", "stale", "deferred", "failed"]
    attempts: int = Field(description="Processing attempts so far")
    replays: int
    error: EventError | None = Field(description="Why the last attempt failed or was deferred")
    received_at: str
    received_via: str | None = Field(description="The path that stored it first: webhook, eventbridge or poll "
                                                 "(the events poll found it)")
    updated_at: str | None
    processed_at: str | None
    next_attempt_at: str | None = Field(description="When a deferred event is tried again")


class WebhookEventList(ResponseModel):
    data: list[WebhookEvent]
    next_cursor: str | None


@router.get("/v1/webhook-events/<event_id>", summary="A webhook event's processing state", tags=["webhooks"],
            responses={200: success("The event"), **error_responses(404)})
def get_webhook_event(event_id: str) -> Response[WebhookEvent]:
    return http.respond(WebhookEvent, 200, store.get(http.path_param(router, "event_id", event_id)))


@router.get("/v1/webhook-events", summary="Failed, deferred or received webhook events, newest first",
            tags=["webhooks"],
            responses={200: success("A page of events"), **error_responses(422)})
def list_webhook_events(
    status: Annotated[Literal["failed", "deferred", "received"],
                      Query(description="served by a sparse index (received: waiting for the processor)")] = "failed",
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[WebhookEventList]:
    data, next_cursor = store.list_by_status(status, limit=limit, cursor=cursor)
    return http.respond(WebhookEventList, 200, {"data": data, "next_cursor": next_cursor})


@router.post("/v1/webhook-events/<event_id>/replay", summary="Run a stored event again", tags=["webhooks"],
             responses={202: success("Replay requested"), **error_responses(404)})
def replay_webhook_event(event_id: str) -> Response[WebhookEvent]:
    return http.respond(WebhookEvent, 202, store.replay(http.path_param(router, "event_id", event_id)))


# -- POST /v1/webhooks/stripe, served by the webhook function ---------------------------


class WebhookAck(BaseModel):
    received: Literal[True]
    duplicate: bool = Field(description="true when this event id was stored before (nothing was written)")


def openapi_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) describing the webhook endpoint, for the
    API's document; the webhook function implements it (billing.webhooks.ingest)."""
    schemas = {"WebhookAck": WebhookAck.model_json_schema(ref_template="#/components/schemas/{model}")}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    paths = {"/v1/webhooks/stripe": {"post": {
        "tags": ["webhooks"],
        "summary": "Stripe webhook endpoint",
        "description": (
            "Open (no IAM auth): trusts only the Stripe-Signature header, verified over the raw body "
            "against any configured signing secret with a 300 s tolerance. The event is stored once per "
            "event id and processed asynchronously."),
        "operationId": "stripe_webhook_v1_webhooks_stripe_post",
        "security": [],
        "parameters": [{"name": "Stripe-Signature", "in": "header", "required": True,
                        "schema": {"type": "string"}, "example": "t=1700000000,v1=5257a869e7..."}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "A Stripe event (at most 256 KiB), exactly as Stripe signed it",
            "required": ["id", "type", "created"],
            "properties": {"id": {"type": "string"}, "type": {"type": "string"},
                           "created": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                           "data": {"type": "object"}, "livemode": {"type": "boolean"}}}}}},
        "responses": {
            "200": {"description": "Stored (or already stored)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookAck"}}}},
            "400": {"description": "invalid_signature, or bad_request for a malformed event", "content": error},
            "413": {"description": "Payload too large", "content": error},
        },
    }}}
    return paths, schemas
