"""Sync with Stripe and with the services around this one (DESIGN.md section 8).

- inbound.py: Stripe events from an EventBridge partner event bus (a Stripe
  event destination) into the same once-only store as the webhook route
  (billing.webhooks.inbox), deduplicated by event id.
- domain_events.py: what a ledger row or a failed usage event is on the
  domain event bus (detail-type, detail), and what never goes on it.
- bus.py: PutEvents in order per subject, with partial failure.
- publisher.py: the publisher function's stream batches (the ledger's
  stream, and the meter_events stream's transitions to failed).

sync sits above billing.webhooks in the layers (pyproject.toml): the
inbound adapter stores through the webhook store's own once-only put, so
there is one put and one dedupe by event id for every inbound path.
"""
