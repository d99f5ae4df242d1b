"""POST /v1/mcp against the local stack (DESIGN.md section 11): the SDK's
own streamable HTTP client, through the stack's gateway as API Gateway
proxy events, to the MCP function the template routes it to. Both protocol
revisions (the initialize handshake, and 2026-07-28's per-request envelope),
one request after another on the same warm function, the Host checks, and
the read tools' answers next to the REST API's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp import Client as McpClient

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_handler_events import load_event

REVISIONS = ["legacy", "2026-07-28"]


def session(url: str, mode: str, *steps: tuple[str, dict[str, Any]]) -> tuple[str, list[Any]]:
    """Connect in `mode`, call the tools in order; the negotiated revision and each result."""
    async def run() -> tuple[str, list[Any]]:
        async with McpClient(url, mode=mode) as client:
            results = [await client.call_tool(name, arguments) for name, arguments in steps]
            return client.protocol_version, results

    return asyncio.run(run())


def body(result: Any) -> Any:
    text = result.content[0].text
    return json.loads(text.split(": ", 1)[1] if result.is_error else text)


@pytest.mark.parametrize("mode", REVISIONS)
def test_both_revisions_answer_the_rest_objects_on_a_warm_function(stack: LocalStack, api: Client,
                                                                    mode: str) -> None:
    owner = f"mcp-{mode}"
    created = api.put(f"/v1/owners/Team/{owner}/customer", {"email": f"{owner}@example.com", "currency": "usd"})
    assert created.status_code in (200, 201), created.text
    customer = created.json()
    url = f"{stack.url}/v1/mcp"
    version, results = session(url, mode, ("describe", {}), ("get", {"type": "Customer", "id": customer["id"]}),
                               ("billing", {"owner_type": "Team", "owner_id": owner}),
                               ("find", {"type": "Customer", "filter": {"owner_type": "Team", "owner_id": owner}}),
                               ("find", {"type": "Customer", "filter": {"colour": "red"}}))
    assert version == ("2026-07-28" if mode != "legacy" else version) and version
    if mode == "legacy":
        assert version < "2026"  # the initialize handshake's revision
    described, got, billing, found, refused = results
    assert not any(r.is_error for r in results[:4]), [r.content for r in results]
    assert "Customer" in {t["type"] for t in body(described)["types"]}
    rest = api.get(f"/v1/customers/{customer['id']}").json()
    assert body(got) == rest
    assert body(billing)["customer"] == api.get(f"/v1/owners/Team/{owner}/billing").json()["customer"]
    assert [c["id"] for c in body(found)["data"]] == [customer["id"]]
    assert refused.is_error and "filter.colour" in json.dumps(body(refused))


def test_a_second_session_on_the_same_function_is_served(stack: LocalStack) -> None:
    # A transport built once per process would serve the first and fail the next.
    url = f"{stack.url}/v1/mcp"
    for mode in REVISIONS * 2:
        _, (listed,) = session(url, mode, ("describe", {}))
        assert not listed.is_error


def test_write_tools_are_absent_by_default(stack: LocalStack) -> None:
    async def names() -> list[str]:
        async with McpClient(f"{stack.url}/v1/mcp") as client:
            return [t.name for t in (await client.list_tools()).tools]

    assert asyncio.run(names()) == ["describe", "find", "get", "billing"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:3000"])
def test_local_hosts_are_not_refused_as_dns_rebinding(api: Client, host: str) -> None:
    answer = api.post("/v1/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}, headers={
        "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18", "Host": host})
    assert answer.status_code == 200, answer.text
    assert [t["name"] for t in answer.json()["result"]["tools"]][:1] == ["describe"]


def test_api_gateways_host_is_served_warm_and_any_other_host_refused(stack: LocalStack) -> None:
    """The sample event as API Gateway sends it (events/mcp/tools_list.json):
    Host is the API's execute-api name, which requestContext.domainName vouches
    for. Twice on the same warm function; a Host API Gateway did not serve
    is still refused (the SDK's DNS-rebinding protection stays on)."""
    event = load_event("mcp/tools_list.json")
    for _ in range(2):
        result = stack.invoke("McpFunction", event)
        assert result["statusCode"] == 200, result["body"]
        assert json.loads(result["body"])["result"]["tools"][0]["name"] == "describe"
    forged = {**event, "headers": {**event["headers"], "Host": "evil.example"},
              "multiValueHeaders": {**event["multiValueHeaders"], "Host": ["evil.example"]}}
    assert stack.invoke("McpFunction", forged)["statusCode"] == 421


def test_a_malformed_request_is_a_4xx_never_a_500(api: Client) -> None:
    for raw, content_type, status in ((b"{not json", "application/json", 400), (b"[]", "text/plain", 400),
                                      (b"x" * (300 * 1024), "application/json", 413)):
        answer = api.request("POST", "/v1/mcp", data=raw, headers={
            "Content-Type": content_type, "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18"})
        assert answer.status_code == status, (content_type, answer.status_code, answer.text[:200])
