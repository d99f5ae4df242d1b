"""Stripe's webhook signature scheme, verified without the Stripe SDK.

`Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]` where
each v1 is HMAC-SHA256, keyed with an endpoint's signing secret, of
`"<t>.<raw body>"`. The header may carry several v1 entries (Stripe signs
with every secret that is live during a rotation) and the endpoint may
accept several secrets (ours, while it is being rotated): any secret
matching any v1 entry verifies. The timestamp must not be older than the
tolerance, so a captured delivery cannot be replayed later.

This mirrors `stripe.WebhookSignature.verify_header` case for case (the
tests run both on the same inputs), including its header parsing: items
split on ",", each on the first two "=", `t` taken from the first `t` item
and parsed by `int()`. Two deliberate differences, both on inputs the SDK
rejects too: a body that is not UTF-8 is hashed as bytes instead of raising
UnicodeDecodeError, and a non-ASCII signature is a mismatch instead of a
TypeError from hmac.compare_digest.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SCHEME = "v1"
TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The delivery is not signed by any configured secret (or is too old).
    The message says which check failed; it never contains the header,
    the body or a secret."""


def _parse(header: str) -> tuple[int, list[str]]:
    items = [item.split("=", 2) for item in header.split(",")]
    try:
        # Every `t` item is indexed, not just the first, exactly as the SDK does.
        timestamp = int([item[1] for item in items if item[0] == "t"][0])  # noqa: RUF015 - as the SDK
        signatures = [item[1] for item in items if item[0] == SCHEME]
    except (IndexError, ValueError):
        raise SignatureError("unable to extract timestamp and signatures from the header") from None
    return timestamp, signatures


def _sign(secret: str, timestamp: int, payload: bytes) -> bytes:
    mac = hmac.new(secret.encode("utf-8"), b"%d." % timestamp + payload, hashlib.sha256)
    return mac.hexdigest().encode("ascii")


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload` (tests, the local trigger)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={_sign(secret, t, payload).decode('ascii')}"


def verify(payload: bytes, header: str | None, secrets: Sequence[str], *,
           tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> int:
    """Return the signed timestamp, or raise SignatureError."""
    if not header:
        raise SignatureError("no Stripe-Signature header")
    usable = [s for s in secrets if s and s.strip(" \t\r\n\f\v")]
    if not usable:
        raise SignatureError("no webhook signing secret is configured")
    timestamp, signatures = _parse(header)
    if not signatures:
        raise SignatureError(f"no signatures with the expected scheme {SCHEME}")
    candidates = [s.encode("utf-8") for s in signatures]
    matched = False
    for secret in usable:
        expected = _sign(secret, timestamp, payload)
        # Every comparison runs, in constant time per signature, so the time
        # taken says nothing about which secret or entry came close.
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no signature matches the payload")
    if tolerance and timestamp < (time.time() if now is None else now) - tolerance:
        raise SignatureError("the timestamp is outside the tolerance zone")
    return timestamp
