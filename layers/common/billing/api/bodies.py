"""The API's one door for request bodies (billing.core.jsonbody's rules).

Powertools reads a body in its request-validation middleware, which runs
before any middleware of ours, through `current_event.json_body`: a base64
body is decoded with `bytes.decode()` (UnicodeDecodeError on anything not
UTF-8) and parsed with the resolver's `json_body_deserializer` (`json.loads`:
RecursionError on deep nesting, ValueError past Python's int-string limit).
It turns only `json.JSONDecodeError` into a 422/400, so those three were 500s.

So the resolver reads every body here instead: `StrictResolver` hands
Powertools events whose `decoded_body` is strict UTF-8 and whose JSON comes
from `jsonbody.loads`; both raise BadRequest, which the resolver's exception
handlers answer 400 `bad_request` before the route (or validation) runs.
Routes that declare no body never make Powertools read one, so
`read_every_body` (a global middleware) reads it for them: a body sent to
any route is held to the same rules, and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from billing.core import jsonbody
from billing.core.errors import BadRequest


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


def read_every_body(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Read the body of a route that declares none (a route that declares one
    has had it read by validation already; the parse is cached)."""
    if app.current_event.body:
        _ = app.current_event.json_body
    return next_middleware(app)
