"""Typed domain errors. Each carries the contract's error type and HTTP status,
so the API maps every one of them in a single place (billing.api.resolver)."""

from __future__ import annotations

from typing import Any, ClassVar


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


class ConfigurationError(Exception):
    """The function is deployed without a setting it needs. Not a caller's fault."""
