"""event_publisher: every ledger row, and every usage event that ends
failed, onto the stack's EventBridge bus (DESIGN.md section 8).

Two DynamoDB stream mappings (the ledger's, and meter_events' filtered to
transitions to failed); partial batch failure keeps each subject's events
in order through retries (billing.sync.publisher).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import EventPublisherSettings, load
from billing.sync import publisher

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(EventPublisherSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return publisher.handle(event)
