"""events_poll: reads Stripe's Events API from the stored cursor on a
schedule and stores every event not stored yet through the webhook's
once-only put, so an event whose webhook never came is applied like any
other (DESIGN.md section 8; billing.sync.events_poll).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import EventsPollSettings, load
from billing.sync import events_poll

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(EventsPollSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return events_poll.poll()
