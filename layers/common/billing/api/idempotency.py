"""Idempotency-Key on every POST, PUT, PATCH and DELETE of the API (Stripe's
convention, DESIGN.md section 4), in one place: the resolver itself, so a
route cannot opt out, nor forget to opt in.

With the header, the request runs under Powertools' idempotency utility on
the idempotency table, keyed by the caller, the method, the path and the
key; the payload hash covers the body (and the query). The first response
is kept for 24 hours and replayed (with `Idempotent-Replayed: true`) to a
retry with the same key and body; the same key with another body is 422
`idempotency_key_reused`; the same key while its first request still runs
is 409 `idempotency_key_in_use`. A response that means nothing ran (the
request was refused as malformed or invalid, a concurrent write won, the
service was unavailable or failed) is not kept, so the retry runs again.

The processor calls a request makes are keyed from its Idempotency-Key
(billing.core.idempotency), so a request that runs again after its first
attempt failed half way makes the same processor calls, not new objects.
Without the header nothing is stored and a POST creates a new object each
time, as on Stripe; natural keys (owner, usage identifier, active
promotion code) hold either way.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Final, cast

from billing.api.errors import CONCURRENT_CHANGE
from billing.api.lazy import LazyResolver
from billing.core import idempotency, jsonbody
from billing.core.errors import BadRequest
from billing.core.observability import logger
from billing.core.settings import ApiSettings, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext

HEADER: Final = "Idempotency-Key"
WEBHOOK_PATH: Final = "/v1/webhooks/stripe"  # another function's route: Stripe's event ids dedupe it
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEEP_SECONDS: Final = 24 * 3600
API_TIMEOUT_SECONDS: Final = 29
MAX_KEY_LENGTH: Final = 255
KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
# Refusals that mean the request never ran: kept, they would bar the corrected retry.
_NOT_RUN_STATUSES: Final = frozenset({400, 413, 415, 422, 429})


class _Deadline:
    """The remaining time of an invocation without a Lambda context (tests):
    API Gateway's 29 seconds from now."""

    def __init__(self) -> None:
        self._until = time.monotonic() + API_TIMEOUT_SECONDS

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._until - time.monotonic()) * 1000))


class _NotKept(Exception):
    """A response that must not be replayed: raised through Powertools'
    utility, which then forgets the key, and answered as it is."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("response not kept")
        self.result = result


def _error(status: int, type_: str, message: str, details: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"error": {"type": type_, "message": message, "details": details or {}}}
    return {"statusCode": status, "body": json.dumps(body), "isBase64Encoded": False,
            "multiValueHeaders": {"Content-Type": ["application/json"],
                                  **{k: [v] for k, v in (headers or {}).items()}}}


def _header(event: Mapping[str, Any]) -> str | None:
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == HEADER.lower() and isinstance(value, str):
            return value
    return None


# arn:<partition>:sts::<account>:assumed-role/<role>/<session>
_ASSUMED_ROLE: Final = re.compile(r"^(arn:[^:]+:sts::[^:]*:assumed-role/[^/]+)/.+$")


def principal(identity: Mapping[str, Any]) -> str:
    """The caller's AWS account and IAM principal, as API Gateway's
    requestContext.identity names them for a SigV4 request. An assumed role
    is the role: its session name differs per ECS task, EC2 instance or
    Lambda sandbox of one service, and a retry from another of them is the
    same caller's retry. IAM users (and anything else) are kept as they are."""
    arn = identity.get("userArn")
    if isinstance(arn, str) and arn:
        match = _ASSUMED_ROLE.match(arn)
        who = match.group(1) if match else arn
    else:
        # No ARN: `caller` is "<role id>:<session>" for a role, "<user id>" for a user.
        caller = identity.get("caller") or identity.get("user")
        who = str(caller).split(":", 1)[0] if caller else "anonymous"
    account = identity.get("accountId")
    return f"{account}/{who}" if account else who


def _caller(event: Mapping[str, Any]) -> str:
    return principal((event.get("requestContext") or {}).get("identity") or {})


def _body(event: Mapping[str, Any]) -> Any:
    """The body as JSON when it is JSON (so key order and spacing do not make
    another body), else as sent."""
    raw = event.get("body")
    if not isinstance(raw, str) or event.get("isBase64Encoded"):
        return raw
    try:
        # Strict (billing.core.jsonbody): a hostile body is hashed as sent,
        # and the resolver refuses it (400, not kept) before anything runs.
        return jsonbody.loads(raw)
    except BadRequest:
        return raw


def scope(caller: str, method: str, path: str) -> str:
    """What keeps equal keys apart: the processor keys of a request under
    Idempotency-Key K are derived from K within this scope."""
    return json.dumps([caller, method, path])


def _asks_for_retry(result: dict[str, Any]) -> bool:
    headers = {str(k).lower() for k in (result.get("multiValueHeaders") or {})}
    headers |= {str(k).lower() for k in (result.get("headers") or {})}
    return "retry-after" in headers


def _json_body(result: dict[str, Any]) -> Any:
    try:
        return json.loads(result.get("body") or "null")
    except (ValueError, TypeError):
        return None


def _kept(result: dict[str, Any]) -> bool:
    """Whether a response is kept for replay: not when it asks for a retry
    (429, 5xx, a Retry-After, the 409 of a concurrent change, a 207 with an
    item to send again), nor when it means nothing ran."""
    status = int(result.get("statusCode", 500))
    if status >= 500 or status in _NOT_RUN_STATUSES or _asks_for_retry(result):
        return False
    body = _json_body(result)
    if status == 409:
        error = body.get("error") if isinstance(body, dict) else None
        return not (isinstance(error, dict) and error.get("message") == CONCURRENT_CHANGE)
    if status == 207:
        items = body.get("data") if isinstance(body, dict) else None
        return not any(isinstance(i, dict) and int(i.get("status") or 0) >= 500 for i in items or ())
    return True


def _replayed(response: Any, idempotent_data: Any) -> Any:
    """Powertools' hook for an answer from the store: say it is a replay."""
    if isinstance(response, dict):
        headers = response.setdefault("multiValueHeaders", {})
        if isinstance(headers, dict):
            headers[REPLAYED_HEADER] = ["true"]
    return response


@cache
def _store() -> DynamoDBPersistenceLayer:
    # Imported on the first request that carries the header: boto3 stays out of the cold start.
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(table_name=load(ApiSettings).idempotency_table)


def reset_store() -> None:
    """Forget the persistence layer (and its client): tests that swap AWS backends."""
    _store.cache_clear()


class IdempotentResolver(LazyResolver):
    """The API's resolver (strict bodies, lazy route groups): every mutating
    request goes through Idempotency-Key."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        method = str(event.get("httpMethod") or "").upper()
        key = _header(event) if method in MUTATING else None
        if key is None:
            with idempotency.request(None):
                return dict(super().resolve(event, context))
        if not KEY.match(key):
            return _error(422, "validation_error", f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                          "characters without spaces", {HEADER: "invalid"})
        with idempotency.request(key, scope(_caller(event), method, str(event.get("path")))):
            return self._once(event, context, key, method)

    def _once(self, event: Mapping[str, Any], context: LambdaContext, key: str, method: str) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        config = IdempotencyConfig(event_key_jmespath="[caller, method, path, key]",
                                   payload_validation_jmespath="[body, query]", raise_on_no_idempotency_key=True,
                                   expires_after_seconds=KEEP_SECONDS, response_hook=_replayed)
        # A request that dies half way frees its key when it would have timed out.
        deadline = context if hasattr(context, "get_remaining_time_in_millis") else _Deadline()
        config.register_lambda_context(cast("LambdaContext", deadline))
        request = {"key": key, "caller": _caller(event), "method": method, "path": event.get("path"),
                   "body": _body(event), "query": sorted((event.get("queryStringParameters") or {}).items())}

        def run(request: dict[str, Any]) -> dict[str, Any]:
            result = dict(LazyResolver.resolve(self, event, context))
            if not _kept(result):
                raise _NotKept(result)
            return result

        try:
            answer = idempotent_function(run, data_keyword_argument="request", persistence_store=_store(),
                                         config=config, key_prefix="api")(request=request)
        except _NotKept as not_kept:
            return not_kept.result
        except IdempotencyValidationError:
            return _error(422, "idempotency_key_reused", f"this {HEADER} was used with another request body",
                          {HEADER: key})
        except IdempotencyAlreadyInProgressError:
            return _error(409, "idempotency_key_in_use", f"a request with this {HEADER} is still running; "
                          "retry shortly", {HEADER: key}, headers={"Retry-After": "1"})
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            # The store failed (throttled, unreachable): nothing was kept, send it again.
            logger.warning("idempotency store unavailable", extra={"error_type": type(exc).__name__})
            return _error(503, "unavailable", "the service is busy; send the same request again shortly",
                          {"retry_after_seconds": 1}, headers={"Retry-After": "1"})
        return dict(answer)


def document(doc: dict[str, Any]) -> None:
    """State the header on every mutating operation of the OpenAPI document,
    with what a reused key answers and how a replay is marked."""
    parameter = {
        "name": HEADER, "in": "header", "required": False,
        "description": "Stripe's convention: the first response under a key is kept 24 h and replayed to a "
                       "retry with the same body; another body under the same key is 422 idempotency_key_reused.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[!-~]+$"},
    }
    replayed = {"description": "true when this response is a replay of the first one under the Idempotency-Key",
                "schema": {"type": "string"}}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if method.upper() not in MUTATING or path == WEBHOOK_PATH:
                continue
            operation.setdefault("parameters", []).append(dict(parameter))
            responses = operation.setdefault("responses", {})
            responses.setdefault("422", {"description": "Validation error (or idempotency_key_reused)"})
            responses.setdefault("409", {"description": "Conflict (or idempotency_key_in_use)"})
            for status, response in responses.items():
                if str(status).startswith("2"):
                    response.setdefault("headers", {})[REPLAYED_HEADER] = dict(replayed)
