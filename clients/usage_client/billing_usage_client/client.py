"""UsageClient: report usage to billing-functions from another service.

Each report carries an identifier (yours, or a generated one), which the
service and Stripe use to count it once. A report that failed transiently
(network, timeout, 429, 5xx) is sent again with the same identifier, so
retries never bill twice: a resend of a report that did land is answered
200 with the stored event.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from billing_usage_client.batching import UsageBatcher
from billing_usage_client.errors import (
    UsageAuthError,
    UsageConflict,
    UsageConnectionError,
    UsageError,
    UsageNotFound,
    UsageServerError,
    UsageValidationError,
)
from billing_usage_client.events import MAX_BATCH, event_body, new_identifier

SERVICE = "execute-api"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _CredentialSource(Protocol):
    def get_credentials(self) -> Credentials | None: ...


class UsageClient:
    """Report usage with SigV4-signed requests.

    - `base_url`: the stack's ApiUrl output (https://....execute-api.<region>.amazonaws.com/<stage>).
    - `region`: the API's region (part of the signature).
    - `credentials`: botocore Credentials; default: `session`'s, else botocore's
      default chain (environment, profile, instance/task role...).
    - `session`: a boto3 or botocore session to take credentials from.
    - `max_retries`: resends after a transient failure (same identifier each time).
    """

    def __init__(self, base_url: str, region: str, *, credentials: Credentials | None = None,
                 session: _CredentialSource | None = None, max_retries: int = 4, timeout: float = 10.0,
                 backoff_base: float = 0.2, backoff_cap: float = 5.0, http: requests.Session | None = None) -> None:
        if credentials is None:
            if session is None:
                import botocore.session

                session = botocore.session.get_session()
            credentials = session.get_credentials()
        if credentials is None:
            raise UsageAuthError("no AWS credentials found to sign requests with")
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._credentials = credentials
        self._http = http or requests.Session()

    # -- public ----------------------------------------------------------------------

    def report(self, event_name: str, value: int, *, customer_id: str | None = None,
               stripe_customer_id: str | None = None, owner: Mapping[str, str] | tuple[str, str] | None = None,
               timestamp: int | datetime | str | None = None, identifier: str | None = None,
               operation_id: str | None = None) -> dict[str, Any]:
        """Report usage; returns the meter event (stripe_status "pending" when new).

        Give exactly one of customer_id, stripe_customer_id or owner
        ({"type": ..., "id": ...} or (type, id)). Without an identifier one is
        generated; pass your own (e.g. derived from the operation) so that a
        report repeated by your own retries is counted once too.
        """
        body = event_body(event_name, value, customer_id=customer_id, stripe_customer_id=stripe_customer_id,
                          owner=owner, timestamp=timestamp, operation_id=operation_id)
        identifier = identifier or new_identifier()
        # A valid identifier (A-Za-z0-9_-.:) needs no escaping in a path, so the
        # path API Gateway verifies the signature over is the one sent.
        return self._send("PUT", f"/v1/usage/{quote(identifier, safe=':')}", body, identifier)

    def send_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /v1/usage/batch: 1 to 100 events (each `event_body(...)` plus its
        `identifier`), one request; the per-event results, in order.

        The request is retried as a whole after a transient failure (the same
        identifiers, so an event that did land is answered 200 the second
        time); a result whose own status is 503 is for the caller to send again.
        """
        if not 1 <= len(events) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} events")
        result = self._send("POST", "/v1/usage/batch", {"events": events}, f"batch of {len(events)}")
        data: list[dict[str, Any]] = result["data"]
        return data

    def report_many(self, *, max_events: int = MAX_BATCH, max_age: float = 5.0) -> UsageBatcher:
        """A buffer of usage events sent as batches: when it holds `max_events`,
        when its oldest event is `max_age` seconds old, on flush(), on close()
        (or leaving its `with` block) and at interpreter exit. See UsageBatcher:
        an event it took is never dropped silently."""
        return UsageBatcher(self, max_events=max_events, max_age=max_age)

    def get(self, identifier: str) -> dict[str, Any]:
        """The meter event with this identifier (its stripe_status, reported_at, stripe_error)."""
        return self._send("GET", f"/v1/usage/{quote(identifier, safe=':')}", None, identifier)

    # -- transport -------------------------------------------------------------------

    def _signed(self, method: str, url: str, data: bytes | None) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=data or b"",
                             headers={"Content-Type": "application/json"} if data else {})
        # Frozen per request: refreshable credentials (roles) may rotate between calls.
        frozen: ReadOnlyCredentials = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    def _send(self, method: str, path: str, body: dict[str, Any] | None, identifier: str) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        last: UsageError = UsageConnectionError("the request was not sent", identifier=identifier)
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(attempt, last)
            try:
                response = self._http.request(method, url, data=data, headers=self._signed(method, url, data),
                                              timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = UsageConnectionError(f"no response from the usage API: {type(exc).__name__}",
                                            identifier=identifier)
                continue
            if response.status_code in RETRY_STATUSES:
                last = _error(response, identifier)
                continue
            if response.status_code >= 400:
                raise _error(response, identifier)
            result: dict[str, Any] = response.json()
            return result
        raise last

    def _sleep(self, attempt: int, last: UsageError) -> None:
        # Full jitter, but never sooner than the server asked (Retry-After, capped).
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))  # noqa: S311
        if last.retry_after is not None:
            delay = max(delay, min(last.retry_after, self.backoff_cap))
        time.sleep(delay)


_BY_STATUS: dict[int, type[UsageError]] = {
    400: UsageValidationError, 401: UsageAuthError, 403: UsageAuthError, 404: UsageNotFound,
    409: UsageConflict, 422: UsageValidationError,
}


def _error(response: requests.Response, identifier: str) -> UsageError:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or f"HTTP {response.status_code}")
        error_type, details = error.get("type"), error.get("details")
    else:
        # API Gateway's own answers ({"message": "..."}) and anything else.
        message = str(payload.get("message")) if isinstance(payload, dict) and payload.get("message") \
            else f"HTTP {response.status_code}"
        error_type, details = None, None
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = UsageServerError if response.status_code >= 500 or response.status_code == 429 else UsageError
    exc = cls(message, status=response.status_code, error_type=str(error_type) if error_type else None,
              details=details if isinstance(details, dict) else None, identifier=identifier)
    retry_after = response.headers.get("Retry-After")
    if retry_after and retry_after.strip().isdigit():
        exc.retry_after = float(retry_after)
    return exc
