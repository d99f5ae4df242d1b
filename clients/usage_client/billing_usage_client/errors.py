"""What a usage report can fail with, one type per thing a caller does about it."""

from __future__ import annotations

from typing import Any


class UsageError(Exception):
    """Base of every error the client raises.

    `status` is the HTTP status (None when no response came back), `error_type`
    the contract's error type (e.g. `timestamp_out_of_window`), `details` the
    error's details object, `identifier` the usage identifier concerned.
    """

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None,
                 details: dict[str, Any] | None = None, identifier: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.details = details or {}
        self.identifier = identifier
        # Seconds the server asked us to wait (Retry-After), if it did.
        self.retry_after: float | None = None


class UsageValidationError(UsageError):
    """422 (or 400): the report is invalid as sent. Do not retry it unchanged."""


class UsageNotFound(UsageError):
    """404: the customer (or the usage identifier) does not exist."""


class UsageConflict(UsageError):
    """409: the identifier was already used for a different report (identifier_conflict)."""


class UsageAuthError(UsageError):
    """401/403: the caller's AWS credentials were refused (IAM)."""


class UsageServerError(UsageError):
    """5xx or 429 after every retry: the service is unavailable. Retrying later with
    the same identifier is safe."""


class UsageConnectionError(UsageServerError):
    """No response at all after every retry (network, timeout)."""
