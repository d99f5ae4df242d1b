"""OpenAPI `responses` entries shared by every route: success entries that
take their schema from the route's `Response[Model]` annotation, and the
contract's error body."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseHeader
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    type: str = Field(description="Machine-readable error type, e.g. validation_error")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


ETAG: OpenAPIResponseHeader = {"description": 'The lock_version, quoted ("3"): send it back as If-Match',
                                "schema": {"type": "string"}}


def success(description: str, *, etag: bool = False) -> OpenAPIResponse:
    """A success entry without content: Powertools fills it in from the
    route's return annotation, so every success status of a route (200 and
    201, say) is documented with the one model its body is serialised by."""
    response: OpenAPIResponse = {"description": description}
    if etag:
        response["headers"] = {"ETag": ETAG}
    return response


def error_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI `responses` entries for the given error statuses."""
    schema: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {status: {"description": _DESCRIPTIONS.get(status, "Error"), "content": schema} for status in statuses}


_DESCRIPTIONS = {
    400: "Malformed request",
    404: "Not found",
    409: "Conflict",
    412: "Stale lock_version",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation error",
    502: "Processor error",
}
