"""The REST API function (DESIGN.md section 4)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.api.app import app
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

# A deployment missing a table fails its cold start, naming the variable.
require_env(CUSTOMERS_TABLE, PAYMENT_METHODS_TABLE, SUBSCRIPTIONS_TABLE, INVOICES_TABLE, CHARGES_TABLE, EVENTS_TABLE)
require_env(METER_EVENTS_TABLE)
require_env(WEBHOOK_EVENTS_TABLE)
require_env(COUPONS_TABLE, PROMOTION_CODES_TABLE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
