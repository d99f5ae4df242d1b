"""The request's Idempotency-Key (Stripe's convention), as the domain code
sees it: the key processor calls are made under, and the one the ledger
records.

The API layer (billing.api.idempotency) replays the first response under a
key; this module makes a request that does run (a first attempt, or a retry
after one that failed before its response was kept) call the processor with
the same keys as before, so a retried request never makes two processor
objects. Without the header, each request gets keys of its own: a POST
creates a new object each time, as on Stripe.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# (the caller's Idempotency-Key or None, the base processor keys are derived from)
_request: ContextVar[tuple[str | None, str] | None] = ContextVar("billing_request_key", default=None)


@contextmanager
def request(key: str | None, scope: str = "") -> Iterator[None]:
    """Run one request under `key` (the header, or None for a fresh base).
    `scope` (the caller and route) keeps two callers' equal keys apart."""
    base = json.dumps([scope, key]) if key is not None else f"fresh:{uuid.uuid4().hex}"
    token = _request.set((key, base))
    try:
        yield
    finally:
        _request.reset(token)


def header() -> str | None:
    """The caller's Idempotency-Key, if the current request has one."""
    current = _request.get()
    return current[0] if current is not None else None


def processor_key(operation: str, *subject: str) -> str:
    """The idempotency key of one processor call: the operation and its
    subject under the request's key, so a retry of the request repeats the
    call instead of making a second object. Outside a request (or without
    the header) every call gets a fresh one."""
    current = _request.get()
    base = current[1] if current is not None else f"fresh:{uuid.uuid4().hex}"
    digest = hashlib.sha256(json.dumps([operation, *subject, base]).encode()).hexdigest()[:48]
    return f"{operation}-{digest}"
