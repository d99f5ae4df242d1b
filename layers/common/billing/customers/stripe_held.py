"""The customer columns whose canonical value is Stripe's, read from a
Stripe customer object: what the webhook path applies (billing.webhooks.
customers) and what the API writes from Stripe's answer to its own call
(create.py, update.py), with the answer's watermark.

Stripe holds email, name, currency, tax_exempt, preferred_locales (the row
keeps the first) and metadata (the row keeps it without the reserved owner
keys, which link the owner and are never the caller's). Stripe's currency
is null until its first invoice or subscription sets it; until then the
row keeps the currency the host application chose. preferred_timezone and
the owner are this deployment's only.
"""

from __future__ import annotations

import time
from typing import Any, Final

from billing.core import ids
from billing.customers.keys import RESERVED_METADATA, CustomerAttrs
from billing.data.tables import CustomerRow
from billing.processor.fields import reference, text

STRIPE_COLUMNS: Final = ("email", "name", "currency", "tax_exempt", "preferred_locale", "metadata")
# The watermark id (`last_stripe_event_id`) of a row written from Stripe's
# answer to the API's own call (create, PATCH): the row holds Stripe's state
# as of that second. No Stripe event id starts with it.
ANSWER_MARK: Final = "api_"


def answer_watermark() -> tuple[int, str]:
    """The watermark for a row written from Stripe's answer, taken once Stripe
    has answered: the answer's second, so Stripe's own event for this very
    call (created no later) is stale or, in the same second, re-fetched and
    found already applied (billing.webhooks.customers)."""
    return int(time.time()), f"{ANSWER_MARK}{ids.ulid()}"


def set_from_answer(last_event_id: str | None) -> bool:
    """Whether the row's watermark is an API call's (Stripe's answer, not an event)."""
    return bool(last_event_id and last_event_id.startswith(ANSWER_MARK))


def attrs_from(obj: dict[str, Any]) -> CustomerAttrs:
    """The columns of a Stripe customer object (no checks: Stripe's is canonical)."""
    raw_meta = obj.get("metadata")
    meta = {k: v for k, v in (raw_meta.items() if isinstance(raw_meta, dict) else ())
            if isinstance(k, str) and isinstance(v, str) and k not in RESERVED_METADATA}
    locales = obj.get("preferred_locales")
    locale = locales[0] if isinstance(locales, list) and locales and isinstance(locales[0], str) else None
    return CustomerAttrs(email=text(obj.get("email")), name=text(obj.get("name")),
                         currency=text(obj.get("currency")), tax_exempt=text(obj.get("tax_exempt")),
                         preferred_locale=locale, metadata=meta)


def default_payment_method(obj: dict[str, Any]) -> str | None:
    settings = obj.get("invoice_settings")
    return reference(settings.get("default_payment_method")) if isinstance(settings, dict) else None


def apply_columns(row: CustomerRow, obj: dict[str, Any]) -> list[str]:
    """Set the columns Stripe holds from its object; the names of those that
    changed (never their values: they are personal data)."""
    attrs = attrs_from(obj)
    changed = []
    for name in STRIPE_COLUMNS:
        value = getattr(attrs, name)
        if name == "currency" and value is None:
            continue  # Stripe has none yet: the host application's choice stands
        current = (row.metadata or {}) if name == "metadata" else getattr(row, name)
        if current != value:
            setattr(row, name, value)
            changed.append(name)
    return changed
