"""Response shapes shared by every route, so the OpenAPI document states them."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    type: str = Field(description="Machine-readable error type, e.g. validation_error")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


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
