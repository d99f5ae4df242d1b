"""Stripe webhooks (DESIGN.md section 4).

- signature.py: Stripe's `Stripe-Signature` scheme, without the SDK.
- inbox.py: the once-only put every inbound path shares (this route and
  EventBridge, billing.sync.inbound): one row per Stripe event id.
- ingest.py: the webhook function's ack path (verify, put once, answer).
- store.py: the webhook_events rows: outcomes, replay, re-drive, listing.
- reconcile.py: one stream record -> dispatch by type -> an outcome.
- thin.py: thin events applied as their snapshot type, the object fetched.
- customers.py, objects.py: how each object type lands in its projection.

The ack path imports only signature.py, inbox.py and ingest.py (no Stripe
SDK, no PynamoDB), so the webhook function starts fast.
"""
