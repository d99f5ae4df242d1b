"""The OpenAPI document of the whole API, as callers see it.

Powertools builds it from the routes' annotations; this module adds what
Powertools cannot know: the webhook route (another function's), the
contract's error body on every error response, and the 503 of routes that
touch DynamoDB.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from billing.api import idempotency
from billing.api.schemas import ErrorBody

TITLE = "billing-functions"
VERSION = "0.1.0"

# Routes that touch no table, hence never answer 503.
NO_STORAGE_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})
UNAVAILABLE_RESPONSE: dict[str, Any] = {
    "description": "unavailable: DynamoDB is throttling; nothing was written, send the same request again",
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
}

MALFORMED_RESPONSE: dict[str, Any] = {
    "description": "Malformed request: a body that is not UTF-8 JSON, nests deeper than 32 levels or holds a "
                   "number Python will not convert; nothing was written",
}


def _contract_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Document the errors this API really returns.

    Powertools describes its own 422 and 500 bodies (HTTPValidationError,
    ResponseValidationError); our error mapping answers every error in the
    contract's shape instead. A 500 is a body its route's model refused: a
    bug of ours, whatever the request.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            # Every route reads any body it is sent, strictly (billing.api.bodies).
            responses.setdefault("400", dict(MALFORMED_RESPONSE))
            if path not in NO_STORAGE_PATHS:
                # Every route that reads or writes DynamoDB answers 503 when it
                # throttles past the SDK's retries (billing.api.errors).
                responses.setdefault("503", dict(UNAVAILABLE_RESPONSE))
            for status, response in responses.items():
                if str(status).startswith(("4", "5")):
                    response["content"] = ref
            if "422" in responses:
                responses["422"]["description"] = "Validation error"
            if "500" in responses:
                responses["500"]["description"] = "Internal error (nothing about it is returned)"
    return doc


def document(app: APIGatewayRestResolver) -> str:
    doc = json.loads(app.get_openapi_json_schema(
        title=TITLE,
        version=VERSION,
        description="Stripe billing on AWS: customers, usage metering, webhooks, promotion codes.",
    ))
    # The webhook endpoint is another function's route: described here so the
    # one document covers the whole API. (Imported here: its route group loads
    # on first use, billing.api.lazy.)
    from billing.api.routes import webhook_events

    webhook_paths, webhook_schemas = webhook_events.openapi_paths()
    doc.setdefault("paths", {}).update(webhook_paths)
    doc.setdefault("components", {}).setdefault("schemas", {}).update(webhook_schemas)
    idempotency.document(doc)
    return json.dumps(_contract_errors(doc))
