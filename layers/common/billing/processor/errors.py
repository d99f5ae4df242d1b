"""One failure type for every processor implementation.

Callers (the API, the meter reporter, reconcile) decide two things from a
failure: whether retrying can help (`transient`) and what to tell the user or
store on a row (`to_safe_dict`). Both must come out the same whether the
failure came from Stripe, from the Fake, or across the Fake's RPC hop, so the
Stripe SDK's exception zoo is flattened here once.

The message is Stripe's human-readable `error.message` at most, capped: never
the raw response body, which can echo request parameters (emails, addresses)
and would otherwise end up in logs and DynamoDB rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK is imported only by code that talks to Stripe
    import stripe

MAX_MESSAGE_LENGTH = 512

# 409s that mean "another request holds the lock right now": Stripe did not
# execute this request, so the same request (same idempotency key) can succeed
# a moment later. Other 409s are real conflicts.
_RETRYABLE_CONFLICT_CODES = frozenset({"lock_timeout", "idempotency_key_in_use"})

# Failure types raised without an HTTP response at all.
NETWORK = "network"
TIMEOUT = "timeout"
RATE_LIMIT = "rate_limit"
API_ERROR = "api_error"
INVALID_REQUEST = "invalid_request_error"
# A v2 meter event session token expired: a new session (not a new
# idempotency key) makes the same batch succeed, so it counts as transient.
SESSION_EXPIRED = "temporary_session_expired"


def _cap(message: str) -> str:
    message = " ".join(message.split())  # one line: these go into log records
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "\u2026"


def is_transient(status: int | None, error_type: str, code: str | None) -> bool:
    """Whether the same request may succeed later (429, 5xx, network, lock timeouts)."""
    if status is None:
        return error_type in (NETWORK, TIMEOUT)
    if status == 429 or status >= 500:
        return True
    if status == 409 and code in _RETRYABLE_CONFLICT_CODES:
        return True
    return error_type == SESSION_EXPIRED


# Refusals that say the deployment's key is wrong (rotated, revoked, or
# missing a permission), not that the request is: every call fails alike
# until the key is fixed, so the work waits instead of failing.
_SYSTEMIC_STATUSES = frozenset({401, 403})


def is_systemic(failure: ProcessorFailure) -> bool:
    """Whether a failure is the deployment's, not the request's (a 401 or
    403 other than an expired v2 meter session): retry later, never fail
    the row or event for it."""
    return failure.status in _SYSTEMIC_STATUSES and failure.type != SESSION_EXPIRED


class ProcessorFailure(Exception):
    """A processor call failed. Safe to log and to store (see `to_safe_dict`)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str = API_ERROR,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        transient: bool | None = None,
    ) -> None:
        self.message = _cap(message or "processor request failed")
        super().__init__(self.message)
        self.status = status
        self.type = error_type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.transient = is_transient(status, error_type, code) if transient is None else transient

    def __repr__(self) -> str:
        return (
            f"ProcessorFailure(status={self.status!r}, type={self.type!r}, code={self.code!r}, "
            f"param={self.param!r}, transient={self.transient!r}, message={self.message!r})"
        )

    def to_safe_dict(self) -> dict[str, Any]:
        """The derived shape a meter event row's `stripe_error` may hold."""
        return {"type": self.type, "code": self.code, "message": self.message}

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able: what the Fake's RPC sends back to the caller."""
        return {
            "status": self.status,
            "type": self.type,
            "code": self.code,
            "param": self.param,
            "message": self.message,
            "request_id": self.request_id,
            "transient": self.transient,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessorFailure:
        status = data.get("status")
        transient = data.get("transient")
        return cls(
            str(data.get("message") or ""),
            status=status if isinstance(status, int) else None,
            error_type=str(data.get("type") or API_ERROR),
            code=_opt_str(data.get("code")),
            param=_opt_str(data.get("param")),
            request_id=_opt_str(data.get("request_id")),
            transient=transient if isinstance(transient, bool) else None,
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def from_stripe_error(exc: stripe.StripeError) -> ProcessorFailure:
    """Flatten any stripe-python exception into a ProcessorFailure.

    Reads the parsed `error` object of the response (type, code, param,
    message) and the response headers; never `http_body` or `json_body`.
    """
    import stripe  # already loaded: the caller holds one of its exceptions

    if isinstance(exc, stripe.APIConnectionError):
        # No HTTP response: connection refused, reset, DNS, or a timeout. The
        # SDK's message carries the underlying exception's text, which names
        # the URL at most; keep only which of the two it was.
        text = str(exc.user_message or "")
        timed_out = "timeout" in text.lower() or "timed out" in text.lower()
        return ProcessorFailure(
            "timed out waiting for Stripe" if timed_out else "could not reach Stripe",
            error_type=TIMEOUT if timed_out else NETWORK,
        )

    status = exc.http_status
    error = exc.error  # ErrorObject parsed from {"error": {...}}, or None
    code = _opt_str(getattr(error, "code", None)) if error is not None else None
    code = code or exc.code
    param = _opt_str(getattr(error, "param", None)) if error is not None else None
    stripe_type = _opt_str(getattr(error, "type", None)) if error is not None else None

    if status == 429 or isinstance(exc, stripe.RateLimitError):
        error_type = RATE_LIMIT
    elif stripe_type:
        error_type = stripe_type
    elif status is not None and status >= 500:
        error_type = API_ERROR
    elif isinstance(exc, stripe.AuthenticationError):
        error_type = "authentication_error"
    elif isinstance(exc, stripe.PermissionError):
        error_type = "permission_error"
    elif isinstance(exc, stripe.IdempotencyError):
        error_type = "idempotency_error"
    else:
        error_type = API_ERROR if status is None or status >= 500 else INVALID_REQUEST

    if error is not None and getattr(error, "message", None):
        message = str(error.message)
    elif exc.http_body is None and exc.user_message:
        # Raised by the SDK itself before any request (e.g. no API key): its
        # text is a fixed hint, not a response.
        message = str(exc.user_message)
    else:
        # A response that was not Stripe's error JSON (a proxy's HTML page...).
        # The SDK's message would embed that body; say only what happened.
        message = f"Stripe returned an unexpected response (HTTP {status})"

    transient: bool | None = None
    # Stripe tells the client whether a retry can help; its SDK obeys this
    # header for its own retries, and so do ours (e.g. a 500 replayed from
    # the idempotency cache would fail the same way forever).
    should_retry = (exc.headers or {}).get("stripe-should-retry") or (exc.headers or {}).get("Stripe-Should-Retry")
    if should_retry == "true":
        transient = True
    elif should_retry == "false":
        transient = False

    return ProcessorFailure(
        message,
        status=status,
        error_type=error_type,
        code=code,
        param=param,
        request_id=exc.request_id,
        transient=transient,
    )
