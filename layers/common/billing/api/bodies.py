"""The API's one door for request bodies (billing.core.jsonbody's rules).

Powertools reads a body in its request-validation middleware, which runs
before any middleware of ours, through `current_event.json_body`: a base64
body is decoded with `bytes.decode()` (UnicodeDecodeError on anything not
UTF-8) and parsed with the resolver's `json_body_deserializer` (`json.loads`:
RecursionError on deep nesting, ValueError past Python's int-string limit).
It turns only `json.JSONDecodeError` into a 422/400, so those three were 500s.

So the resolver reads every body here instead: `StrictResolver` reads a
request's body strictly before Powertools routes it (so a hostile body is
400 `bad_request` on every route, before the validation of its path and
query too), and hands Powertools events whose `decoded_body` is strict
UTF-8 and whose JSON comes from `jsonbody.loads`. Nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from billing.core import jsonbody
from billing.core.errors import BadRequest

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class StrictBodyEvent(APIGatewayProxyEvent):
    """A REST proxy event whose body decodes strictly (BadRequest, not UnicodeDecodeError)."""

    @cached_property
    def decoded_body(self) -> str | None:
        body: str | None = self.body
        if not body or not self.is_base64_encoded:
            return body
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the request body is not valid base64") from None
        return jsonbody.text(raw)


class StrictResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver whose events are StrictBodyEvents and whose JSON
    bodies are parsed by billing.core.jsonbody."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(json_body_deserializer=jsonbody.loads, **kwargs)

    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        return StrictBodyEvent(event, self._json_body_deserializer)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if event.get("body"):
            try:
                StrictBodyEvent(dict(event), self._json_body_deserializer).json_body  # noqa: B018 - read to refuse
            except BadRequest as refused:
                return refusal(refused)
        return dict(super().resolve(event, context))


def refusal(exc: BadRequest) -> dict[str, Any]:
    """A REST proxy answer for a body refused before routing: the contract's
    error shape, as billing.api.errors answers every other error."""
    body = {"error": {"type": exc.error_type, "message": exc.message, "details": exc.details}}
    return {"statusCode": exc.status, "body": json.dumps(body), "isBase64Encoded": False,
            "multiValueHeaders": {"Content-Type": ["application/json"]}}
