"""Stripe webhooks (DESIGN.md section 4).

- signature.py: Stripe's `Stripe-Signature` scheme, without the SDK.
- ingest.py: the webhook function's ack path (verify, put once, answer).
- store.py: the webhook_events rows: outcomes, replay, re-drive, listing.
- reconcile.py: one stream record -> dispatch by type -> an outcome.
- customers.py, objects.py: how each object type lands in its projection.

The ack path imports only signature.py and ingest.py (no Stripe SDK, no
PynamoDB), so the webhook function starts fast.
"""
