"""The API function's resolver with every router included."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

from billing.api import errors, openapi
from billing.api.routes import customers, health, promotions, usage, usage_batch, usage_summary, webhook_events

# Every route returns Response[Model]: Powertools validates the body against the
# model and serialises it through it. A body the model refuses is our bug, so
# a 500 internal_error (billing.api.errors), never a 422 to the caller.
app = APIGatewayRestResolver(enable_validation=True,
                             response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR)
errors.register(app)
app.include_router(health.router)
app.include_router(customers.router)
app.include_router(usage.router)
app.include_router(usage_batch.router)
app.include_router(usage_summary.router)
app.include_router(webhook_events.router)
app.include_router(promotions.router)


@cache
def openapi_json() -> str:
    return openapi.document(app)


@app.get("/v1/openapi.json", summary="This API's OpenAPI document", tags=["operations"],
         response_description="OpenAPI 3 document")
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())
