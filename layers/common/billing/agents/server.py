"""The MCP server object (the official `mcp` SDK's MCPServer): the read
tools, annotated read-only, and the write tools only when McpWriteTools is
true. Built once per process; every request is served by a fresh stateless
transport around it (billing.agents.transport)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from billing.agents import tools

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

NAME = "billing-functions"
INSTRUCTIONS = (
    "Billing state of this application's owners (users, teams, organisations) and their Stripe customers. "
    "Call describe first: it lists the types, their fields, the filters find takes and the includes get takes. "
    "Answers are the REST API's objects; lists page with next_cursor."
)


def _doc(fn: Callable[..., Any]) -> str:
    return " ".join((fn.__doc__ or "").split())


def build(*, write_tools: bool) -> MCPServer:
    # The SDK logs each tool error's text at INFO; pydantic's carry the value
    # the agent sent (an id, an owner), which stays out of our logs.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    server = MCPServer(NAME, instructions=INSTRUCTIONS, log_level="WARNING")
    for fn in tools.READ_TOOLS:
        server.add_tool(fn, description=_doc(fn), structured_output=False,
                        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    if write_tools:
        for fn, destructive in tools.WRITE_TOOLS:
            server.add_tool(fn, description=_doc(fn), structured_output=False,
                            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=destructive,
                                                        idempotent_hint=True, open_world_hint=False))
    return server
