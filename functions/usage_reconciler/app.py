"""usage_reconciler: on a schedule, starts the usage reconciliation runs the
clock asks for (each closed hour after the settle delay, each previous
day); from the sync table's stream, carries a running run on from its last
checkpoint (billing.metering.reconciliation, DESIGN.md section 10).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import UsageReconcilerSettings, load
from billing.metering.reconciliation import schedule

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(UsageReconcilerSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return schedule.handle(event, context)
