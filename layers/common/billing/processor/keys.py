"""Idempotency keys the processor derives itself.

Stripe's idempotency keys are account-wide: a key one operation derives
must never equal another's, or Stripe replays the wrong answer (or refuses
with an idempotency_error). Every derived key starts with the name of its
operation; after it come only our own ids, Stripe ids or digests, except
for usage, whose identifier the caller chooses (`A-Za-z0-9_-.:`): it always
follows its own prefix, so an identifier shaped like another operation's key
(`usage-cancel:u-1`, `pm-detach-pm_...`) still cannot equal it.

The keys derived elsewhere, each under its own prefix: usage-cancel:
(billing.metering.cancel), pm-attach-, pm-detach-
(billing.customers.payment_methods), customer-create-, customer-update-,
customer-delete-, tax-location- (billing.customers), coupon-create-,
promotion-code-* (billing.promotions), subscription-*, checkout and portal
sessions (billing.core.idempotency.processor_key).
"""

from __future__ import annotations

from typing import Final

METER_EVENT_PREFIX: Final = "meter-event:"


def meter_event_key(identifier: str) -> str:
    """The v1 meter event create's key: a resend of the same identifier
    replays Stripe's first answer instead of failing on the duplicate."""
    return f"{METER_EVENT_PREFIX}{identifier}"
