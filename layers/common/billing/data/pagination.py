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
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from billing.core.errors import ValidationFailed
from billing.data import lanes
from billing.data.tables import hash_key_name, key_names

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


# -- index pages ---------------------------------------------------------------------------------


def query_page[M: Model](model: type[M], index: GlobalSecondaryIndex[Any], hash_key: str, *, scope: str, limit: int,
                         cursor: str | None, condition: Any = None, newest_first: bool = True
                         ) -> tuple[list[M], str | None]:
    """One page of `index` at `hash_key`, from this list's cursor to the next
    one; `condition` narrows the page (a short page still carries the cursor
    on, as DynamoDB filters after it reads)."""
    start = decode(cursor, scope=scope, key_names=key_names(model, index), pinned={hash_key_name(index): hash_key})
    found = index.query(hash_key, filter_condition=condition, limit=limit, page_size=limit,
                        last_evaluated_key=start, scan_index_forward=not newest_first)
    rows = list(found)
    return rows, encode(found.last_evaluated_key, scope=scope)


def laned_page[M: Model](model: type[M], index: GlobalSecondaryIndex[Any], base: str, *, scope: str, limit: int,
                         cursor: str | None, condition: Any = None, newest_first: bool = True,
                         budget: int = lanes.DEFAULT_BUDGET) -> tuple[list[M], str | None]:
    """query_page's contract on a laned index (billing.data.lanes): one page of
    every lane of `base`, merged, from this list's cursor to the next one, the
    rows read whole. `condition` filters on the index's projected attributes."""
    scope = scope + lanes.SCOPE_SUFFIX
    state = decode(cursor, scope=scope)
    positions = dict.fromkeys(lanes.all_lanes()) if state is None else lanes.check_positions(state)
    read = lanes.LaneRead(model, index, base, condition, newest_first, page_entries=max(limit, 10))
    entries, after = lanes.merge(positions, read, limit=limit, budget=budget)
    found = {getattr(row, str(model._hash_keyname)): row for row in model.batch_get([pk for _, pk in entries])}
    partition = hash_key_name(index)
    rows = []
    for _, pk in entries:
        row = found.get(pk)
        # Gone, or moved to another key (its status changed) since the index was read.
        if row is not None and str(getattr(row, partition, None) or "").startswith(f"{base}#"):
            rows.append(row)
    return rows, encode(after, scope=scope)


def is_laned(index: GlobalSecondaryIndex[Any]) -> bool:
    return bool(getattr(index, "laned", False))


def filtered_page[M: Model](model: type[M], choices: Sequence[tuple[str, GlobalSecondaryIndex[Any]]],
                            filters: Mapping[str, Any], *, everything: tuple[GlobalSecondaryIndex[Any], str],
                            name: str, limit: int, cursor: str | None, condition: Any = None
                            ) -> tuple[list[M], str | None]:
    """Newest first, from the index of the first filter given in `choices`
    (the most selective first), else from `everything` (an index and the
    partition every row is listed under); the other filters narrow the page.
    `name` (the list, with whatever else changes its rows) scopes the cursor."""
    given = {key: value for key, value in filters.items() if value is not None}
    chosen, index = next(((n, i) for n, i in choices if n in given), (None, everything[0]))
    hash_key = str(given[chosen]) if chosen is not None else everything[1]
    for other, value in sorted(given.items()):
        if other != chosen:
            term = getattr(model, other) == value
            condition = term if condition is None else condition & term
    scope = json.dumps([name, chosen, hash_key, sorted(given.items())])
    if is_laned(index):
        return laned_page(model, index, hash_key, scope=scope, limit=limit, cursor=cursor, condition=condition)
    return query_page(model, index, hash_key, scope=scope, limit=limit, cursor=cursor, condition=condition)
