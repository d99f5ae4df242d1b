"""meter_reporter: delivers pending usage from the meter_events stream to
Stripe Meters (DESIGN.md section 4, Delivery)."""

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import require_env
from billing.data.tables import METER_EVENTS_TABLE
from billing.metering.delivery import handle_stream

require_env(METER_EVENTS_TABLE)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle_stream(event, context)
