"""What never enters a stored processor object: personal data and card
fingerprints, dropped wherever they appear in it (billing details, addresses,
phones, shipping, a legacy source's owner). One rule for the user path and
the webhook path alike."""

from __future__ import annotations

from typing import Any

PII_KEYS = frozenset({"address", "phone", "shipping", "billing_details", "fingerprint", "customer_address",
                      "customer_phone", "customer_shipping", "shipping_details", "owner"})


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in PII_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
