"""The API function's resolver: the routes every request may reach, and the
registry of route groups it imports on first use (billing.api.lazy)."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response, content_types

from billing.api import errors, openapi
from billing.api.idempotency import IdempotentResolver
from billing.api.lazy import group
from billing.api.routes import health
from billing.core import snapstart

# The route groups: a module of billing.api.routes and every path prefix its
# routes live under. Adding a route module is one line here.
ROUTE_GROUPS = (
    group("customers", "/v1/customers", "/v1/owners"),
    group("usage", "/v1/usage"),
    group("usage_batch", "/v1/usage/batch"),
    group("usage_summary", "/v1/customers/*/usage-summary"),
    group("usage_reconciliations", "/v1/usage/reconciliations"),
    group("webhook_events", "/v1/webhook-events"),
    group("promotions", "/v1/coupons", "/v1/promotion-codes"),
    group("catalog", "/v1/prices", "/v1/products"),
    group("subscriptions", "/v1/subscriptions", "/v1/customers/*/subscriptions"),
    group("invoices", "/v1/invoices", "/v1/charges"),
    group("billing", "/v1/owners/*/*/billing", "/v1/owners/*/*/entitlements", "/v1/customers/*/checkout-sessions",
          "/v1/customers/*/portal-sessions", "/v1/customers/*/sync"),
    group("sync", "/v1/sync"),
)

# Every route returns Response[Model]: Powertools validates the body against the
# model and serialises it through it. A body the model refuses is our bug, so
# a 500 internal_error (billing.api.errors), never a 422 to the caller. Bodies
# are read strictly, before validation, on every route (billing.api.bodies).
# Every POST, PUT, PATCH and DELETE takes an Idempotency-Key (billing.api.idempotency).
app = IdempotentResolver(enable_validation=True,
                         response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR, groups=ROUTE_GROUPS)
errors.register(app)
app.include_router(health.router)
# With SnapStart, the snapshot holds every route group: no restored environment loads one.
snapstart.before_snapshot(app.load)


@cache
def openapi_json() -> str:
    # Every group, loaded by the resolver before it builds the document.
    return openapi.document(app)


@app.get("/v1/openapi.json", summary="This API's OpenAPI document", tags=["operations"],
         response_description="OpenAPI 3 document")
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())
