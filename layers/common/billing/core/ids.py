"""Time-sortable identifiers (ULID layout: 48-bit milliseconds, 80 random bits,
Crockford base32), so ledger rows and list pages sort by creation."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int | None = None) -> str:
    value = ((now_ms if now_ms is not None else int(time.time() * 1000)) << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
