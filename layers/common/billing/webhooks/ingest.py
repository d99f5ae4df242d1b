"""The webhook function's ack path: verify the signature over the raw body,
store the event once per id, answer 200 fast.

Exactly one DynamoDB write request per delivery (a conditional PutItem, so a
redelivery writes nothing) and no processor call: processing happens on the
table's stream. To keep the cold start short this module imports neither
the Stripe SDK nor PynamoDB; the row it writes has the attribute names of
billing.data.tables.WebhookEventRow.

Errors are DomainErrors answered in the contract's shape through their own
`to_body()`: this function has one route, and Powertools' event handler
would add ~100 ms of imports to every cold start for nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters

from billing.core import jsonbody, snapstart
from billing.core.errors import (
    BadRequest,
    ConfigurationError,
    DomainError,
    InvalidSignature,
    PayloadTooLarge,
    Unavailable,
)
from billing.core.observability import logger, metrics
from billing.core.settings import WebhookIngestSettings, load
from billing.webhooks import inbox, signature
from billing.webhooks.inbox import Delivery

MAX_BODY_BYTES = 256 * 1024
# Secrets are cached this long; a rotation is picked up within five minutes
# without a cold start (sooner through the forced refresh below).
SECRETS_MAX_AGE_SECONDS = 300
# A delivery no cached secret verifies may be signed by a secret added since
# the cache was filled: re-read SSM, but at most this often, so a flood of
# forged requests cannot turn into a flood of SSM calls.
FORCED_REFRESH_INTERVAL_SECONDS = 60
_lock = threading.Lock()
_last_forced_refresh = 0.0

__all__ = ["Delivery", "handle", "parse", "store", "verify"]


# -- HTTP ------------------------------------------------------------------------------


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """API Gateway proxy event in, proxy response out."""
    try:
        raw = raw_body(event)
        verify(raw, header(event, "Stripe-Signature"))
        delivery = parse(raw)
        duplicate = not store(delivery)
    except Unavailable as exc:
        # Stripe retries any non-2xx; Retry-After tells other senders when.
        return response(exc.status, exc.to_body(), {"Retry-After": str(exc.retry_after_seconds)})
    except DomainError as exc:
        return response(exc.status, exc.to_body())
    except ConfigurationError as exc:
        logger.error("webhook function is misconfigured", extra={"reason": str(exc)})
        return response(500, {"error": {"type": "internal_error", "message": "the service is misconfigured",
                                        "details": {}}})
    metrics.add_metric(name="WebhookDuplicate" if duplicate else "WebhookStored", unit=MetricUnit.Count, value=1)
    logger.info("webhook acknowledged", extra={"event_id": delivery.id, "event_type": delivery.type,
                                               "duplicate": duplicate})
    return response(200, {"received": True, "duplicate": duplicate})


def response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": json.dumps(body), "isBase64Encoded": False}


def header(event: dict[str, Any], name: str) -> str | None:
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if str(key).lower() == wanted and isinstance(value, str):
            return value
    return None


def raw_body(event: dict[str, Any]) -> bytes:
    """The body exactly as Stripe sent it (API Gateway base64-encodes what it
    cannot pass as text)."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise BadRequest("the request body is missing")
    if event.get("isBase64Encoded"):
        # Refuse before decoding: base64 is 4 characters per 3 bytes.
        if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:
            raise _too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the request body is not valid base64") from None
    else:
        raw = body.encode("utf-8")
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    return raw


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("the webhook body is larger than 256 KiB", {"max_bytes": MAX_BODY_BYTES})


# -- signature -------------------------------------------------------------------------


def secrets(*, force: bool = False) -> list[str]:
    name = load(WebhookIngestSettings).stripe_webhook_secrets_param
    value = parameters.get_parameter(name, decrypt=True, max_age=SECRETS_MAX_AGE_SECONDS, force_fetch=force)
    found = [s.strip() for s in str(value or "").split(",") if s.strip()]
    if not found:
        raise ConfigurationError(f"SSM parameter {name} holds no webhook signing secret")
    return found


def verify(raw: bytes, signature_header: str | None) -> None:
    global _last_forced_refresh
    cached = secrets()
    try:
        signature.verify(raw, signature_header, cached)
        return
    except signature.SignatureError as exc:
        reason = str(exc)
    with _lock:
        refresh = signature_header is not None and time.monotonic() - _last_forced_refresh > \
            FORCED_REFRESH_INTERVAL_SECONDS
        if refresh:
            _last_forced_refresh = time.monotonic()
    if refresh:
        fresh = secrets(force=True)
        if fresh != cached:
            try:
                signature.verify(raw, signature_header, fresh)
                return
            except signature.SignatureError as exc:
                reason = str(exc)
    metrics.add_metric(name="WebhookInvalidSignature", unit=MetricUnit.Count, value=1)
    logger.warning("webhook signature rejected", extra={"reason": reason})
    raise InvalidSignature(f"the Stripe-Signature header does not verify: {reason}")


# -- the event and its storage (billing.webhooks.inbox, shared with EventBridge) ---------


def parse(raw: bytes) -> Delivery:
    """The fields the row needs, or 400 naming what is wrong (never a 500)."""
    # Strict (billing.core.jsonbody): not UTF-8, nested too deep or holding a
    # number Python will not convert is a 400 like any malformed body.
    doc = jsonbody.loads(raw, what="the webhook body")
    if not isinstance(doc, dict):
        raise BadRequest("the webhook body is not a JSON object")
    # The raw text is stored exactly as Stripe signed it.
    return inbox.read(doc, raw.decode("utf-8"))


@snapstart.after_restore
def _forget_refresh() -> None:
    """After a SnapStart restore the secrets are re-read (core.snapstart drops
    Powertools' cache), with no forced refresh pending."""
    global _last_forced_refresh
    with _lock:
        _last_forced_refresh = 0.0


def store(delivery: Delivery) -> bool:
    """One conditional PutItem. True if stored, False if this id was already stored."""
    return inbox.put_once(delivery, load(WebhookIngestSettings).webhook_events_table, via="webhook")
