"""Listing usage: the dead-letter view and the other status lists (merged
from the sharded sparse indexes, never a scan) and one customer's usage."""

from __future__ import annotations

from typing import Any, Final

from pynamodb.indexes import GlobalSecondaryIndex

from billing.core.errors import ValidationFailed
from billing.data import pagination
from billing.data.tables import MeterEventRow, key_names
from billing.metering.outbox import FAILED, PENDING, REPORTED, STATUS_SHARDS, to_api

_DONE: Final = "done"


def _index_key(row: MeterEventRow, hash_name: str, range_name: str) -> dict[str, Any]:
    return {"pk": {"S": row.pk}, hash_name: {"S": getattr(row, hash_name)},
            range_name: {"S": getattr(row, range_name)}}


def _sharded_page(index: GlobalSecondaryIndex[Any], hash_name: str, range_name: str, prefix: str, *, limit: int,
                  cursor: str | None) -> tuple[list[MeterEventRow], str | None]:
    """One page, newest first, merged from every shard of `prefix`.

    Each shard is read in its own order and only ever consumed from the
    front (rows of one batch share a timestamp, and DynamoDB orders such ties
    its own way), so the cursor can keep, per shard, the key of the last row
    this list handed out (or "done"): no row is skipped or repeated.
    """
    scope = f"usage:{hash_name}:{prefix}"
    keys = [f"{prefix}#{n}" for n in range(STATUS_SHARDS)]
    state = pagination.decode(cursor, scope=scope) or {}
    names = key_names(MeterEventRow, index)
    if not isinstance(state, dict) or not all(
            key in keys and (position == _DONE or pagination.is_key(position, names, {hash_name: key}))
            for key, position in state.items()):
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    fetched: dict[str, list[MeterEventRow]] = {}
    more: dict[str, bool] = {}
    for key in keys:
        position = state.get(key)
        if position == _DONE:
            continue
        result = index.query(key, scan_index_forward=False, limit=limit, page_size=limit,
                             last_evaluated_key=position or None)
        fetched[key] = list(result)
        more[key] = result.last_evaluated_key is not None
    taken = dict.fromkeys(fetched, 0)
    page: list[MeterEventRow] = []
    while len(page) < limit:
        heads = [(getattr(rows[taken[key]], range_name), rows[taken[key]].pk, key)
                 for key, rows in fetched.items() if taken[key] < len(rows)]
        if not heads:
            break
        _, _, key = max(heads)
        page.append(fetched[key][taken[key]])
        taken[key] += 1
    for key, rows in fetched.items():
        if taken[key]:
            state[key] = _index_key(rows[taken[key] - 1], hash_name, range_name)
        if taken[key] == len(rows) and not more[key]:
            state[key] = _DONE
    finished = all(state.get(k) == _DONE for k in keys)
    next_cursor = None if finished else pagination.encode(state, scope=scope)
    return page, next_cursor


def list_usage(*, status: str | None, customer_id: str | None, limit: int, cursor: str | None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every filter: never a scan."""
    if customer_id is not None:
        condition = MeterEventRow.stripe_status == status if status else None
        scope = f"usage:customer:{customer_id}:{status or 'all'}"
        start = pagination.decode(cursor, scope=scope, pinned={"customer_id": customer_id},
                                  key_names=key_names(MeterEventRow, MeterEventRow.by_customer))
        result = MeterEventRow.by_customer.query(customer_id, filter_condition=condition, scan_index_forward=False,
                                                 limit=limit, last_evaluated_key=start)
        rows = list(result)
        return [to_api(r) for r in rows], pagination.encode(result.last_evaluated_key, scope=scope)
    if status == REPORTED:
        found, next_cursor = _sharded_page(MeterEventRow.by_reported, "reported_key", "reported_at", REPORTED,
                                           limit=limit, cursor=cursor)
    elif status in (PENDING, FAILED):
        found, next_cursor = _sharded_page(MeterEventRow.by_status, "status_key", "updated_at", status,
                                           limit=limit, cursor=cursor)
    else:
        raise ValidationFailed("filter by status (pending, reported, failed) or customer_id",
                               {"status": "required without customer_id"})
    return [to_api(r) for r in found], next_cursor
