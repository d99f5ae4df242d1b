"""Typed domain errors. Each carries the contract's error type and HTTP status,
so the API maps every one of them in a single place (billing.api.resolver)."""

from __future__ import annotations

from typing import Any, ClassVar, Final


class DomainError(Exception):
    """Base of every error a caller can cause or see."""

    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, type_: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        # A subtype may name a more specific contract type (e.g. identifier_conflict).
        self.error_type = type_ or self.type

    def to_body(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message, "details": self.details}}


class BadRequest(DomainError):
    status, type = 400, "bad_request"


class InvalidSignature(DomainError):
    status, type = 400, "invalid_signature"


class NotFound(DomainError):
    status, type = 404, "not_found"


class Conflict(DomainError):
    status, type = 409, "conflict"


class PreconditionFailed(DomainError):
    status, type = 412, "precondition_failed"


class PayloadTooLarge(DomainError):
    status, type = 413, "payload_too_large"


class UnsupportedMediaType(DomainError):
    status, type = 415, "unsupported_media_type"


class ValidationFailed(DomainError):
    status, type = 422, "validation_error"


class ProcessorError(DomainError):
    """The payment processor failed in a way the caller cannot fix (502)."""

    status, type = 502, "processor_error"


class Unavailable(DomainError):
    """A dependency (DynamoDB) is throttling or briefly failing, past the SDK's
    own retries: nothing was written, the same request can be sent again."""

    status, type = 503, "unavailable"
    retry_after_seconds: ClassVar[int] = 1


# DynamoDB's answers that mean "not now" rather than "never": throttling
# (botocore's standard retry mode retries these itself, with backoff, before
# the code sees them), a transaction still in progress, and its own 5xx.
RETRYABLE_DYNAMODB_CODES: Final = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionInProgressException", "InternalServerError", "ServiceUnavailable",
})
# A TransactWriteItems cancelled because one of its items was throttled.
RETRYABLE_CANCELLATION_CODES: Final = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})


def retryable_dynamodb_code(exc: BaseException) -> str | None:
    """The DynamoDB error code if `exc` is a transient DynamoDB failure, else None.

    Duck-typed over PynamoDB's exceptions (`cause_response_code`,
    `cancellation_reasons`) and botocore's ClientError (`response`), so the
    webhook's lean path can ask without importing PynamoDB."""
    code = getattr(exc, "cause_response_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        error = response.get("Error") if isinstance(response, dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
    if not isinstance(code, str):
        return None
    if code in RETRYABLE_DYNAMODB_CODES:
        return code
    if code == "TransactionCanceledException":
        # Only when throttling is the sole reason: a failed condition beside
        # it is the caller's business, not a reason to retry.
        reasons = [getattr(r, "code", None) for r in (getattr(exc, "cancellation_reasons", None) or []) if r]
        throttled = [r for r in reasons if r in RETRYABLE_CANCELLATION_CODES]
        if throttled and all(r in RETRYABLE_CANCELLATION_CODES or r == "None" for r in reasons):
            return str(throttled[0])
    return None


def transaction_conflict(exc: BaseException) -> bool:
    """A TransactWriteItems cancelled only because another transaction held
    one of its items: nothing was written and the same request can be sent again."""
    if getattr(exc, "cause_response_code", None) != "TransactionCanceledException":
        return False
    reasons = [getattr(r, "code", None) for r in (getattr(exc, "cancellation_reasons", None) or []) if r]
    return "TransactionConflict" in reasons and all(r in ("TransactionConflict", "None") for r in reasons)


class ConfigurationError(Exception):
    """The function is deployed without a setting it needs. Not a caller's fault."""
