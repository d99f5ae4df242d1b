"""One API Gateway proxy event, served by the SDK's streamable HTTP transport.

Stateless and JSON (no SSE, no Mcp-Session-Id): any Lambda instance answers
any request, and nothing is kept between them. The SDK's session manager
runs its task group once per `run()` and cannot be run again, so each
invocation gets a fresh manager (cheap: a few objects) around the one
long-lived server; a Starlette app built once at import would answer the
first invocation and fail the second. The event is handed to the manager as
an ASGI request directly: no Starlette application, no ASGI adapter.

Both protocol revisions are served: the handshake era (`initialize`, then
each request; stateless, so any instance answers) and the per-request
envelope of 2026-07-28.

Host checks: the SDK's DNS-rebinding protection answers 421 to any Host not
listed. API Gateway's own names (`<id>.execute-api.<region>.amazonaws.com`)
and the local stack's (127.0.0.1, localhost, any port) are listed, and the
request's own Host when API Gateway vouches for it (its requestContext
domainName, a custom domain included): the protection exists for browsers
reaching a local server, and here IAM (SigV4) is the door.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from billing.agents import calls

LOCAL_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
# Larger bodies are refused by the SDK (413) before they are parsed.
MAX_BODY_BYTES = 256 * 1024


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    multi = event.get("multiValueHeaders") or {}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items() if v is not None}
    for name, values in multi.items():
        if values:
            headers.setdefault(str(name).lower(), ", ".join(str(v) for v in values))
    return headers


def security(event: Mapping[str, Any]) -> TransportSecuritySettings:
    """The hosts this request may name: the local stack's, and the one API
    Gateway served it on (the request context says which)."""
    domain = str((event.get("requestContext") or {}).get("domainName") or "")
    hosts = [*LOCAL_HOSTS, *([domain] if domain else [])]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=[f"https://{domain}"] if domain else [])


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(raw)
    return str(raw).encode()


def _scope(event: Mapping[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    query = event.get("multiValueQueryStringParameters") or {
        k: [v] for k, v in (event.get("queryStringParameters") or {}).items()}
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "https",
        "method": str(event.get("httpMethod") or "POST").upper(), "path": str(event.get("path") or "/v1/mcp"),
        "raw_path": str(event.get("path") or "/v1/mcp").encode(), "root_path": "",
        "query_string": urlencode(query, doseq=True).encode(),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": (str(((event.get("requestContext") or {}).get("identity") or {}).get("sourceIp") or ""), 0),
        "server": (headers.get("host", "localhost"), 443),
    }


def caller_of(event: Mapping[str, Any]) -> str | None:
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return identity.get("userArn") or identity.get("caller") or None


async def _serve(server: MCPServer, event: Mapping[str, Any]) -> dict[str, Any]:
    headers = _headers(event)
    body = _body(event)
    sent: list[bytes] = []
    status = 500
    reply_headers: dict[str, str] = {}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()  # the client does not disconnect mid-request
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers") or ():
                reply_headers[name.decode("latin-1")] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            sent.append(bytes(message.get("body") or b""))

    # The SDK keeps its low-level server private behind MCPServer; the session
    # manager takes that object (as MCPServer.streamable_http_app does).
    manager = StreamableHTTPSessionManager(server._lowlevel_server, json_response=True, stateless=True,
                                           security_settings=security(event), max_request_body_size=MAX_BODY_BYTES)
    async with manager.run():
        await manager.handle_request(_scope(event, headers), receive, send)
    return {"statusCode": status, "headers": reply_headers, "body": b"".join(sent).decode("utf-8", "replace")}


def handle(server: MCPServer, event: Mapping[str, Any], remaining_ms: int | None = None) -> dict[str, Any]:
    """The proxy response for one proxy event."""
    with calls.caller(caller_of(event), remaining_ms):
        result: dict[str, Any] = anyio.run(_serve, server, event)
    return result
