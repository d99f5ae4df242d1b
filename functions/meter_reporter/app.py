"""meter_reporter: delivers pending usage from the meter_events stream to
Stripe Meters (DESIGN.md section 4, Delivery)."""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.config import require_env
from billing.meter_delivery import handle_stream
from billing.observability import logger, metrics, tracer
from billing.tables import METER_EVENTS_TABLE

require_env(METER_EVENTS_TABLE)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle_stream(event, context)
