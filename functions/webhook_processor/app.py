"""webhook_processor: applies stored Stripe events to the projection.

Two triggers: the webhook_events stream (inserts, replays and re-drives;
partial batch failure) and a schedule that re-drives deferred events whose
backoff has elapsed (billing.webhooks.processing).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import require_env
from billing.data.tables import (
    CHARGES_TABLE,
    COUPONS_TABLE,
    CUSTOMERS_TABLE,
    EVENTS_TABLE,
    INVOICES_TABLE,
    METER_EVENTS_TABLE,
    PAYMENT_METHODS_TABLE,
    PROMOTION_CODES_TABLE,
    SUBSCRIPTIONS_TABLE,
    WEBHOOK_EVENTS_TABLE,
)
from billing.webhooks import processing

require_env(WEBHOOK_EVENTS_TABLE, CUSTOMERS_TABLE, PAYMENT_METHODS_TABLE, SUBSCRIPTIONS_TABLE, INVOICES_TABLE,
            CHARGES_TABLE, COUPONS_TABLE, PROMOTION_CODES_TABLE, EVENTS_TABLE)
# Meter error events move usage rows (billing.metering.meter_errors).
require_env(METER_EVENTS_TABLE)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processing.handle(event, context)
