"""webhook_processor: applies stored Stripe events to the projection.

Two triggers: the webhook_events stream (inserts, replays and re-drives;
partial batch failure) and a schedule that re-drives deferred events whose
backoff has elapsed (billing.webhooks.processing).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import WebhookProcessorSettings, load
from billing.webhooks import processing

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(WebhookProcessorSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processing.handle(event, context)
