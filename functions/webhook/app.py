"""webhook: `POST /v1/webhooks/stripe` (DESIGN.md section 4, Webhooks).

Verify the signature over the raw body, store the event once, answer 200.
Lean on purpose: no Stripe SDK, no PynamoDB, no event-handler resolver.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import require_env
from billing.webhooks import ingest

# A deployment missing its table or secrets parameter fails its cold start.
require_env(ingest.TABLE_ENV, ingest.SECRETS_PARAM)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return ingest.handle(event)
