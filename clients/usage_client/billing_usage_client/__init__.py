"""Report usage to billing-functions: SigV4-signed, retried with the same
identifier, typed errors. See README.md ("Reporting usage from another service")."""

from billing_usage_client.client import UsageClient, new_identifier
from billing_usage_client.errors import (
    UsageAuthError,
    UsageConflict,
    UsageConnectionError,
    UsageError,
    UsageNotFound,
    UsageServerError,
    UsageValidationError,
)

__all__ = [
    "UsageAuthError",
    "UsageClient",
    "UsageConflict",
    "UsageConnectionError",
    "UsageError",
    "UsageNotFound",
    "UsageServerError",
    "UsageValidationError",
    "new_identifier",
]
