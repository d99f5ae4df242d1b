"""Typed domain errors. Each carries the contract's error type and HTTP status,
so the API maps every one of them in a single place (billing.api.resolver)."""

from __future__ import annotations

from typing import Any, ClassVar, Self


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

    @classmethod
    def of_fields(cls, what: str, problems: dict[str, str]) -> Self:
        """One error for every offending field of `what`: named in the
        message, each with its problem in `details.fields`."""
        return cls(f"{what}: {', '.join(sorted(problems))}", {"fields": problems})


class BadRequest(DomainError):
    """The request cannot be read at all (malformed JSON, an unusable body)."""

    status, type = 400, "bad_request"


class InvalidSignature(DomainError):
    """A webhook whose Stripe-Signature matches none of the configured secrets
    within the tolerance: nothing is stored."""

    status, type = 400, "invalid_signature"


class NotFound(DomainError):
    """No such resource, or not one the caller can see through this path."""

    status, type = 404, "not_found"


class Conflict(DomainError):
    """The current state forbids the request (a duplicate, a deleted customer,
    a transition the status does not allow); `type_` may name it more precisely."""

    status, type = 409, "conflict"


class Contended(Conflict):
    """A 409 that asks for a retry: concurrent requests held the same data,
    nothing was written, and the same request sent again can succeed (it
    carries Retry-After, and an Idempotency-Key does not keep it)."""

    retry_after_seconds: ClassVar[int] = 1


class PreconditionFailed(DomainError):
    """If-Match (or a body lock_version) names a version the row has moved past."""

    status, type = 412, "precondition_failed"


class PayloadTooLarge(DomainError):
    """The body is over the route's limit."""

    status, type = 413, "payload_too_large"


class UnsupportedMediaType(DomainError):
    """A body that is not JSON where JSON is expected."""

    status, type = 415, "unsupported_media_type"


class ValidationFailed(DomainError):
    """Readable but invalid: each offending field is named in `details`."""

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
