"""Subscriptions and what hangs off them: the user path's actions (create,
swap, cancel, resume, pause, unpause; actions.py and recording.py),
Checkout and the customer portal (sessions.py), the lists of subscriptions,
invoices and charges (listing.py), entitlements and the owner's billing
summary that the hot path reads (summary.py), and the columns the webhook
path projects them with (columns.py)."""
