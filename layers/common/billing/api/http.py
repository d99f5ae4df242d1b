"""Request and response helpers every route module shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

from billing.core.errors import ValidationFailed
from billing.data.ledger import Actor


def path_param(router: APIGatewayRouter, name: str, matched: str) -> str:
    """A path parameter as API Gateway decoded it.

    REST APIs keep `path` percent-encoded, which is what Powertools matches
    routes against; `pathParameters` carries the decoded values.
    """
    return str((router.current_event.path_parameters or {}).get(name, unquote(matched)))


def actor(router: APIGatewayRouter) -> Actor:
    """The IAM caller API Gateway authenticated (SigV4), for the ledger."""
    identity = router.current_event.request_context.identity.raw_event or {}
    return Actor("api", identity.get("userArn") or identity.get("caller") or None)


def respond[M: BaseModel](model: type[M], status: int, body: Mapping[str, Any], etag: int | None = None
                          ) -> Response[M]:
    """The domain's body, handed to Powertools as it is.

    The route's `Response[model]` annotation makes Powertools validate the
    body against `model` and serialise it through the model (an undeclared
    field is a 500, billing.api.errors); `model` here only ties the route's
    annotation to the body's model for the type checker.
    """
    headers = {"ETag": f'"{etag}"'} if etag is not None else None
    response: Response[Any] = Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                                       body=body, headers=headers)
    return response


def versioned[M: BaseModel](model: type[M], status: int, body: Mapping[str, Any]) -> Response[M]:
    """One versioned resource, with `ETag: "<lock_version>"`."""
    return respond(model, status, body, body["lock_version"])


def if_match(router: APIGatewayRouter) -> int | None:
    headers = router.current_event.headers
    raw = headers.get("if-match") or headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationFailed("If-Match must be a quoted lock_version, e.g. \"3\"", {"If-Match": "invalid"})
    return int(value)
