"""The one cursor codec of every list: an opaque string that holds where the
next page starts, valid only for the list that issued it.

A cursor is not trusted: it decodes only if it names the same list (its
scope: the index and key the list reads) and, when the list says which key
attributes a position holds, only if it holds exactly those, each a
DynamoDB string or number. Anything else is a 422, never a DynamoDB error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from typing import Any, Final

from billing.core.errors import ValidationFailed

MAX_CURSOR_LENGTH: Final = 4096


def _invalid(reason: str = "cursor is not one this list issued") -> ValidationFailed:
    return ValidationFailed(reason, {"cursor": "invalid"})


def encode(position: Any, *, scope: str) -> str | None:
    """A cursor for `position` (a DynamoDB LastEvaluatedKey, or a list's own
    state); None when there is no next page."""
    if not position:
        return None
    raw = json.dumps({"scope": scope, "at": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode()


def is_key(position: Any, names: Collection[str], pinned: Mapping[str, str] | None = None) -> bool:
    """Whether `position` is a DynamoDB key of exactly `names`, each a string
    or a number, with the `pinned` attributes at their values."""
    if not isinstance(position, dict) or set(position) != set(names):
        return False
    if any(position.get(name) != {"S": value} for name, value in (pinned or {}).items()):
        return False
    for value in position.values():
        if not (isinstance(value, dict) and len(value) == 1):
            return False
        (kind, text), = value.items()
        if kind not in ("S", "N") or not isinstance(text, str) or not text:
            return False
    return True


def decode(cursor: str | None, *, scope: str, key_names: Collection[str] | None = None,
           pinned: Mapping[str, str] | None = None) -> Any:
    """The position a cursor of this list holds, or None without a cursor.

    With `key_names`, the position must be a DynamoDB key of exactly those
    attributes (a table's key plus the index's); `pinned` names the ones
    whose value the list fixes (the partition key it queries)."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid()
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise _invalid() from None
    if not isinstance(state, dict) or "at" not in state:
        raise _invalid()
    if state.get("scope") != scope:
        raise _invalid("cursor belongs to another list")
    position = state["at"]
    if key_names is not None and not is_key(position, key_names, pinned):
        raise _invalid()
    return position
