"""The MCP write tools over HTTP (DESIGN.md section 11), on a stack of its
own started with the template parameter McpWriteTools=true (as
`PARAMETER_OVERRIDES="McpWriteTools=true" make run` does): the tools exist,
go through the REST routes' domain functions, and a retried call under the
same idempotency key gets the first answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client as McpClient

from devstack.stack import LocalStack
from tests.conftest import Client, running, stack_settings
from tests.integration.usage_helpers import new_customer, put_usage, settle, uid, usage_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def write_stack(function_log: Path) -> Iterator[LocalStack]:
    yield from running(stack_settings(function_log, concurrency=2, stack_name="billing-local-mcp-write",
                                     parameters={"McpWriteTools": "true"}))


def calls(stack: LocalStack, *steps: tuple[str, dict[str, Any]]) -> tuple[list[str], list[Any]]:
    async def run() -> tuple[list[str], list[Any]]:
        async with McpClient(f"{stack.url}/v1/mcp") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            return names, [await client.call_tool(name, arguments) for name, arguments in steps]

    return asyncio.run(run())


def body(result: Any) -> Any:
    text = result.content[0].text
    return json.loads(text.split(": ", 1)[1] if result.is_error else text)


def test_with_mcp_write_tools_a_failed_usage_event_is_retried_once_per_key(write_stack: LocalStack) -> None:
    api = Client(write_stack.url)
    customer = new_customer(api)
    failed = uid("mcp-retry")
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "code": "meter_event_invalid_value"}).status_code == 200
    put_usage(api, failed, usage_body(customer, 3))
    assert settle(write_stack, api, [failed])[failed]["stripe_status"] == "failed"

    retry = ("retry_usage", {"identifier": failed, "idempotency_key": "agent-retry-1"})
    names, (first, again, other) = calls(write_stack, retry, retry,
                                         ("retry_usage", {"identifier": failed, "idempotency_key": "agent-retry-2"}))
    assert names[4:] == ["replay_webhook_event", "retry_usage", "cancel_usage", "cancel_subscription",
                         "sync_customer"]
    assert not first.is_error and body(first)["stripe_status"] == "pending"
    assert body(again) == body(first)  # the first answer, kept under its key
    # A new key on a row no longer failed: the REST route's 409, as a tool error.
    assert other.is_error and body(other)["error"]["type"] == "conflict"
    assert settle(write_stack, api, [failed])[failed]["stripe_status"] == "reported"
