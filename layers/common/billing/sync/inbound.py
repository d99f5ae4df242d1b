"""Stripe events from an EventBridge partner event bus into the webhook store.

A Stripe event destination of type Amazon EventBridge puts each event on
the partner event source `aws.partner/stripe.com/ed_...`; the stack's rule
on that bus invokes this function with EventBridge's envelope:

    {"version": "0", "id": "<EventBridge id>", "detail-type": "<Stripe type>",
     "source": "aws.partner/stripe.com/ed_...", "account": ..., "time": ...,
     "region": ..., "resources": [...], "detail": {<the Stripe event>}}

`detail` is the Stripe event as a webhook would carry it: a snapshot event
(`data.object`) or a thin one (`related_object`, no `data`). Either is
stored as it is, with the webhook route's own once-only put
(billing.webhooks.inbox), so an event id delivered both ways is one row and
is applied once; thin events are fetched when they are applied
(billing.webhooks.thin), as the meter-error path does.

No signature: an event with the partner source can only come from AWS on
Stripe's behalf (sources beginning with `aws.` are reserved: PutEvents
refuses them; only the partner's PutPartnerEvents, from Stripe's AWS
account, sends them), the rule matches that source only, and the function
is invoked only by the rule (its resource policy names the rule), so there
is nothing to forge and no secret to hold. The source is checked anyway,
so a mis-wired rule fails loudly instead of storing someone else's events.

One invocation and one conditional PutItem per event: EventBridge invokes a
Lambda target once per event, and DynamoDB's batch writes cannot be
conditional, so nothing cheaper keeps the once-only put (bench/eventbridge.py).
Lean on purpose, like the webhook function: no Stripe SDK, no PynamoDB.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from billing.core.errors import BadRequest
from billing.core.observability import logger, metrics
from billing.core.settings import StripeEventsSettings, load
from billing.webhooks import inbox

STRIPE_SOURCE_PREFIX = "aws.partner/stripe.com/"
VIA = "eventbridge"


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """One EventBridge event in; {id, type, duplicate} out.

    A malformed event raises (BadRequest naming fields, never values): the
    asynchronous invocation is retried and then lands in the on-failure
    queue with the event, for an operator, rather than vanishing. A DynamoDB
    outage raises Unavailable for the same retry."""
    source = event.get("source")
    if not isinstance(source, str) or not source.startswith(STRIPE_SOURCE_PREFIX):
        raise BadRequest("not an event of a Stripe partner event source",
                         {"source": f"must start with {STRIPE_SOURCE_PREFIX}"})
    detail = event.get("detail")
    # Stored compact: the row keeps the event, not EventBridge's formatting.
    delivery = inbox.read(detail, json.dumps(detail, separators=(",", ":"), ensure_ascii=False))
    stored = inbox.put_once(delivery, load(StripeEventsSettings).webhook_events_table, via=VIA)
    metrics.add_metric(name="StripeEventStored" if stored else "StripeEventDuplicate", unit=MetricUnit.Count, value=1)
    logger.info("Stripe event received from EventBridge",
                extra={"event_id": delivery.id, "event_type": delivery.type, "duplicate": not stored,
                       "eventbridge_id": event.get("id")})
    return {"id": delivery.id, "type": delivery.type, "duplicate": not stored}
