"""The MCP function (DESIGN.md section 11): agents read (and, with
McpWriteTools, act on) billing over the Model Context Protocol at POST /v1/mcp."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.agents import server, transport
from billing.core.observability import logger, metrics, tracer
from billing.core.settings import McpSettings, load

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(McpSettings)
# One server per process; each request gets its own stateless transport around it.
SERVER = server.build(write_tools=SETTINGS.mcp_write_tools)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return transport.handle(SERVER, event, context.get_remaining_time_in_millis())
