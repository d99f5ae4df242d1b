"""meter_sweeper: on a schedule, re-drives usage rows stuck in pending (for
example after their batch went to the on-failure queue)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import MeterSweeperSettings, load
from billing.metering.sweeper import sweep_from_env

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(MeterSweeperSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return sweep_from_env()
