"""Lanes: one index partition key spread over LANES keys by a row's own id.

DynamoDB takes 1,000 write units a second per partition key; an index whose
key is a constant (every customer, every received webhook, every accepted
usage event) would throttle on that one key in a burst. Pure functions, no
AWS or PynamoDB import: the webhook ack and the usage intake key their rows
with them on their cold-start-lean paths.
"""

from __future__ import annotations

import zlib
from typing import Final

# Changing it re-keys every laned index: rows written with another count are
# invisible to lists until rewritten. Fixed on purpose. 16 keys take 16,000
# write units a second in all.
LANES: Final = 16


def lane_of(identifier: str, count: int = LANES) -> str:
    # Bits 8 and up of the CRC: independent of the low bits other shardings use.
    return f"{(zlib.crc32(identifier.encode()) >> 8) % count:02d}"


def all_lanes(count: int = LANES) -> list[str]:
    return [f"{n:02d}" for n in range(count)]


def laned(value: str, identifier: str) -> str:
    """The index partition key of `value` (a list's name, a status) for the row `identifier`."""
    return f"{value}#{lane_of(identifier)}"
