"""The API function's resolver with every router included."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response, content_types

from billing.api import errors, openapi
from billing.api.idempotency import IdempotentResolver
from billing.api.routes import customers, health, promotions, usage, webhook_events
from billing.api.routes.billing import router as billing_router
from billing.api.routes.catalog import router as catalog_router
from billing.api.routes.invoices import router as invoices_router
from billing.api.routes.subscriptions import router as subscriptions_router

# Every route returns Response[Model]: Powertools validates the body against the
# model and serialises it through it. A body the model refuses is our bug, so
# a 500 internal_error (billing.api.errors), never a 422 to the caller.
# Every POST, PUT, PATCH and DELETE takes an Idempotency-Key (billing.api.idempotency).
app = IdempotentResolver(enable_validation=True,
                             response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR)
errors.register(app)
app.include_router(health.router)
app.include_router(customers.router)
app.include_router(usage.router)
app.include_router(webhook_events.router)
app.include_router(promotions.router)
app.include_router(catalog_router)
app.include_router(subscriptions_router)
app.include_router(invoices_router)
app.include_router(billing_router)


@cache
def openapi_json() -> str:
    return openapi.document(app)


@app.get("/v1/openapi.json", summary="This API's OpenAPI document", tags=["operations"],
         response_description="OpenAPI 3 document")
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())
