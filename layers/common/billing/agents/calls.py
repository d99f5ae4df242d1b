"""Who is calling a tool (the IAM caller API Gateway authenticated), and the
write tools' Idempotency-Key, kept as the REST API keeps it: Powertools'
idempotency utility on the same table, the first answer under a key kept
24 hours and returned to a retry with the same arguments; the same key with
other arguments is a tool error. An error is never kept (Powertools deletes
the record when the function raises), so a retry runs again.

Processor calls made under a key are keyed from it (billing.core.idempotency),
so a retry after a half-finished first attempt makes the same Stripe calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any, Final, cast

from billing.core import idempotency
from billing.core.errors import Conflict, ValidationFailed
from billing.core.settings import McpSettings, load
from billing.data.ledger import Actor

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext

KEEP_SECONDS: Final = 24 * 3600
TOOL_TIMEOUT_SECONDS: Final = 29

_caller: ContextVar[str | None] = ContextVar("billing_mcp_caller", default=None)
_deadline: ContextVar[float | None] = ContextVar("billing_mcp_deadline", default=None)


@contextmanager
def caller(arn: str | None, remaining_ms: int | None = None) -> Iterator[None]:
    """Run one MCP request as `arn` (the SigV4 caller; None locally), with
    the invocation's remaining time (Lambda's context says it)."""
    ms = remaining_ms if remaining_ms is not None else TOOL_TIMEOUT_SECONDS * 1000
    tokens = (_caller.set(arn), _deadline.set(time.monotonic() + ms / 1000))
    try:
        yield
    finally:
        _caller.reset(tokens[0])
        _deadline.reset(tokens[1])


class _Remaining:
    """What Powertools asks of a Lambda context: a call that dies half way
    frees its key when the invocation would have timed out."""

    def get_remaining_time_in_millis(self) -> int:
        deadline = _deadline.get() or time.monotonic() + TOOL_TIMEOUT_SECONDS
        return max(0, int((deadline - time.monotonic()) * 1000))


def actor() -> Actor:
    return Actor("mcp", _caller.get())


@cache
def _store() -> DynamoDBPersistenceLayer:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(table_name=load(McpSettings).idempotency_table)


def reset_store() -> None:
    """Forget the persistence layer (and its client): tests that swap AWS backends."""
    _store.cache_clear()


def once(tool: str, arguments: dict[str, Any], key: str | None, run: Callable[[Actor], dict[str, Any]]
         ) -> dict[str, Any]:
    """`run` once per (caller, tool, key); without a key, the key is the
    arguments themselves, so a retried call returns the first answer."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    who = actor()
    key = key or "derived:" + json.dumps(arguments, sort_keys=True)
    config = IdempotencyConfig(event_key_jmespath="[caller, tool, key]", payload_validation_jmespath="arguments",
                               raise_on_no_idempotency_key=True, expires_after_seconds=KEEP_SECONDS)
    config.register_lambda_context(cast("LambdaContext", _Remaining()))
    request = {"caller": who.id or "local", "tool": tool, "key": key, "arguments": arguments}

    def call(request: dict[str, Any]) -> dict[str, Any]:
        with idempotency.request(key, json.dumps(["mcp", who.id, tool])):
            return run(who)

    try:
        answer: dict[str, Any] = idempotent_function(call, data_keyword_argument="request", persistence_store=_store(),
                                                     config=config, key_prefix="mcp")(request=request)
    except IdempotencyValidationError:
        raise ValidationFailed("this idempotency_key was used with other arguments",
                               {"idempotency_key": "reused"}, type_="idempotency_key_reused") from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict("a call with this idempotency_key is still running; retry shortly",
                       {"idempotency_key": "in use"}, type_="idempotency_key_in_use") from None
    return answer
