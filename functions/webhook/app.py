"""webhook: `POST /v1/webhooks/stripe` (DESIGN.md section 4, Webhooks).

Verify the signature over the raw body, store the event once, answer 200.
Lean on purpose: no Stripe SDK, no PynamoDB, no event-handler resolver.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import WebhookSettings, load
from billing.webhooks import ingest

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(WebhookSettings)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return ingest.handle(event)
