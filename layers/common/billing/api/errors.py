"""The one place where errors become HTTP responses in the contract's shape:
`{"error": {"type", "message", "details"}}`. Nothing here echoes a request
body or a processor payload back, or into a log."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException

from billing.core.errors import (
    ConfigurationError,
    Contended,
    DomainError,
    Unavailable,
)
from billing.core.observability import logger
from billing.data.cancellation import retryable_dynamodb_code, transaction_conflict

# The 409 of a transaction another request held: nothing was written, the
# same request may be sent again (so an Idempotency-Key does not keep it).
CONCURRENT_CHANGE = "a concurrent request changed the same data; send it again"


def error_response(status: int, type_: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response[str]:
    body = {"error": {"type": type_, "message": message, "details": details or {}}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body),
                    headers=headers)


def _unavailable(exc: Unavailable) -> Response[str]:
    seconds = exc.retry_after_seconds
    return error_response(exc.status, exc.error_type, exc.message, {**exc.details, "retry_after_seconds": seconds},
                          headers={"Retry-After": str(seconds)})


def _field_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic's errors without their `input`: where and why, never the value."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "type": str(err.get("type", "invalid")),
                    "message": str(err.get("msg", ""))})
    return out


def field_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Where and why each field was refused, never the value (for a body
    checked piece by piece, as the usage batch checks each event)."""
    return _field_errors(errors)


def _response_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Where a body broke its model and why: never the value (pydantic's
    `input`), nor its message (which may quote it)."""
    return [{"field": ".".join(str(p) for p in err.get("loc", ())), "type": str(err.get("type", "invalid"))}
            for err in errors[:10]]


def _internal(exc: Exception) -> Response[str]:
    # The traceback goes to the log; the caller gets no internals.
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return error_response(500, "internal_error", "internal error")


def register(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(DomainError)
    def _domain(exc: DomainError) -> Response[str]:
        if isinstance(exc, Unavailable):
            return _unavailable(exc)
        if isinstance(exc, Contended):
            return error_response(exc.status, exc.error_type, exc.message, exc.details,
                                  headers={"Retry-After": str(exc.retry_after_seconds)})
        return error_response(exc.status, exc.error_type, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def _validation(exc: RequestValidationError) -> Response[str]:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "bad_request", "request body is not valid JSON")
        fields = _field_errors(errors)
        names = ", ".join(sorted({f["field"] for f in fields}))
        return error_response(422, "validation_error", f"invalid request: {names}", {"errors": fields})

    @app.exception_handler(ResponseValidationError)
    def _response_invalid(exc: ResponseValidationError) -> Response[str]:
        # A domain function returned a body its route's response model does
        # not describe (an undeclared field, a wrong type): a bug of ours,
        # never the caller's. Logged without the body; the caller learns
        # nothing about it.
        event = app.current_event
        route = f"{event.http_method} {event.get('resource') or event.path}"
        logger.error("response does not match its model",
                     extra={"route": route, "errors": _response_errors(list(exc.errors()))})
        return error_response(500, "internal_error", "internal error")

    @app.exception_handler(RequestUnsupportedContentType)
    def _content_type(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(415, "unsupported_media_type", "send the body as application/json")

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[str]:
        event = app.current_event
        return error_response(404, "not_found", f"no route for {event.http_method} {event.path}")

    @app.exception_handler(ConfigurationError)
    def _config(exc: ConfigurationError) -> Response[str]:
        logger.error("function is misconfigured", extra={"reason": str(exc)})
        return error_response(500, "internal_error", "the service is misconfigured")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        return _internal(exc)

    @app.exception_handler([PynamoDBException, ClientError])
    def _dynamodb(exc: Exception) -> Response[str]:
        # DynamoDB throttled (or failed transiently) past botocore's own
        # retries. A throttled request or transaction does not apply, and
        # every write is conditional (identifiers, guards, lock_version), so
        # the same request sent again cannot apply twice: say so with a 503
        # and Retry-After instead of an internal error.
        if transaction_conflict(exc):
            # A concurrent request held the same items and the domain code
            # did not retry it: nothing was written, the caller may resend.
            return error_response(409, "conflict", CONCURRENT_CHANGE, headers={"Retry-After": "1"})
        code = retryable_dynamodb_code(exc)
        if code is None:
            return _internal(exc)
        logger.warning("DynamoDB unavailable past retries; answered 503",
                       extra={"code": code, "error_type": type(exc).__name__})
        return _unavailable(Unavailable("the service is busy; send the same request again shortly"))
