"""backfill: imports the Stripe account page by page through the reconcile
path (DESIGN.md section 8), driven by the sync table's stream: each
checkpoint of a running backfill is the record that processes the next page
(billing.sync.backfill).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import BackfillSettings, load
from billing.sync import backfill

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(BackfillSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return backfill.handle(event, context)
