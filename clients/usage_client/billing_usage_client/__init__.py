"""Report usage to billing-functions: SigV4-signed, retried with the same
identifier, typed errors; one at a time (UsageClient.report) or buffered and
sent 100 to a request (UsageClient.report_many). See README.md ("Reporting
usage from another service")."""

from billing_usage_client.batching import UsageBatcher, UsageBatchError
from billing_usage_client.client import UsageClient
from billing_usage_client.errors import (
    UsageAuthError,
    UsageConflict,
    UsageConnectionError,
    UsageError,
    UsageNotFound,
    UsageServerError,
    UsageValidationError,
)
from billing_usage_client.events import event_body, new_identifier

__all__ = [
    "UsageAuthError",
    "UsageBatchError",
    "UsageBatcher",
    "UsageClient",
    "UsageConflict",
    "UsageConnectionError",
    "UsageError",
    "UsageNotFound",
    "UsageServerError",
    "UsageValidationError",
    "event_body",
    "new_identifier",
]
