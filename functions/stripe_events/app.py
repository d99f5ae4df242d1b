"""stripe_events: Stripe events from the EventBridge partner event bus of a
Stripe event destination into the webhook store (DESIGN.md section 8).

Deployed only when the StripeEventSourceName parameter is set. The rule on
the partner bus invokes it once per event; the event is stored once per id
(deduplicated with the webhook route) and processed like a webhook.
Lean, like the webhook function: no Stripe SDK, no PynamoDB.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger, metrics, tracer
from billing.core.settings import StripeEventsSettings, load
from billing.sync import inbound

# Every variable the function reads, checked now: a deployment missing one fails
# its cold start with one line naming it.
SETTINGS = load(StripeEventsSettings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return inbound.handle(event)
