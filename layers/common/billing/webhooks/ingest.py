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
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError

from billing.core import clock, snapstart
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
from billing.data.cancellation import retryable_dynamodb_code
from billing.webhooks import signature

MAX_BODY_BYTES = 256 * 1024
# Secrets are cached this long; a rotation is picked up within five minutes
# without a cold start (sooner through the forced refresh below).
SECRETS_MAX_AGE_SECONDS = 300
# A delivery no cached secret verifies may be signed by a secret added since
# the cache was filled: re-read SSM, but at most this often, so a flood of
# forged requests cannot turn into a flood of SSM calls.
FORCED_REFRESH_INTERVAL_SECONDS = 60
MAX_ID_LENGTH = 255
# billing.data.tables.WEBHOOK_EVENTS_TABLE, spelled out: importing billing.data.tables
# would load PynamoDB on this path.

_IDENTIFIER = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_lock = threading.Lock()
_client: Any = None
_last_forced_refresh = 0.0


@dataclass(frozen=True)
class Delivery:
    """What the ack path reads from a verified body; the rest waits for the processor."""

    id: str
    type: str
    created: int
    livemode: bool | None
    object_id: str | None
    body: str


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


# -- the event -------------------------------------------------------------------------


def _unix_seconds(value: Any) -> int | None:
    """Stripe's `created`: unix seconds (snapshot events) or RFC 3339 (thin events)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return int(moment.timestamp()) if moment.tzinfo is not None else None
    return None


def parse(raw: bytes) -> Delivery:
    """The fields the row needs, or 400 naming what is wrong (never a 500)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the webhook body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("the webhook body is not a JSON object")
    problems: dict[str, str] = {}
    event_id, event_type = doc.get("id"), doc.get("type")
    if not isinstance(event_id, str) or not _IDENTIFIER.match(event_id) or len(event_id) > MAX_ID_LENGTH:
        problems["id"] = "must be a Stripe event id"
    if not isinstance(event_type, str) or not _IDENTIFIER.match(event_type) or len(event_type) > MAX_ID_LENGTH:
        problems["type"] = "must be a Stripe event type"
    created = _unix_seconds(doc.get("created"))
    if created is None:
        problems["created"] = "must be unix seconds or an RFC 3339 time"
    livemode = doc.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        problems["livemode"] = "must be a boolean"
    object_id: str | None = None
    if "data" in doc:
        data = doc["data"]
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            problems["data.object"] = "must be an object"
        else:
            raw_id = obj.get("id")
            if raw_id is not None and (not isinstance(raw_id, str) or not raw_id):
                problems["data.object.id"] = "must be a string"
            elif isinstance(raw_id, str):
                object_id = raw_id
    if problems or not isinstance(event_id, str) or not isinstance(event_type, str) or created is None:
        raise BadRequest(f"malformed Stripe event: {', '.join(sorted(problems))}", {"fields": problems})
    return Delivery(event_id, event_type, created, livemode, object_id, raw.decode("utf-8"))


# -- storage ---------------------------------------------------------------------------


def _dynamodb() -> Any:
    global _client
    with _lock:
        if _client is None:
            # Endpoint from AWS_ENDPOINT_URL_DYNAMODB when set (the local stack).
            _client = boto3.client("dynamodb")
        return _client


@snapstart.after_restore
def _drop_client() -> None:
    """The DynamoDB client is built again after a SnapStart restore; the secrets are
    re-read (core.snapstart drops Powertools' cache), with no forced refresh pending."""
    global _client, _last_forced_refresh
    with _lock:
        _client = None
        _last_forced_refresh = 0.0


def store(delivery: Delivery) -> bool:
    """One conditional PutItem. True if stored, False if this id was already stored."""
    now = clock.iso()
    item: dict[str, Any] = {
        "pk": {"S": delivery.id},
        "type": {"S": delivery.type},
        "created": {"N": str(delivery.created)},
        "body": {"S": delivery.body},
        "received_at": {"S": now},
        "updated_at": {"S": now},
        "status": {"S": "received"},
        "attempts": {"N": "0"},
        "run": {"N": "0"},
        "replays": {"N": "0"},
        "deferrals": {"N": "0"},
    }
    if delivery.livemode is not None:
        item["livemode"] = {"BOOL": delivery.livemode}
    if delivery.object_id is not None:
        item["object_id"] = {"S": delivery.object_id}
    try:
        _dynamodb().put_item(TableName=load(WebhookIngestSettings).webhook_events_table, Item=item,
                             ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        code = retryable_dynamodb_code(exc)
        if code is None:
            raise
        # Throttled past botocore's retries: nothing was stored, so the
        # delivery is answered 503 and Stripe sends it again later.
        logger.warning("webhook not stored: DynamoDB unavailable", extra={"event_id": delivery.id, "code": code})
        raise Unavailable("the event could not be stored now; deliver it again shortly") from None
    return True
